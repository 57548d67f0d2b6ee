"""A killed sweep, run again, finishes with nothing spliced: real processes, real kills.

``kill -9`` of the sweep's process alone must not leave its group workers training as orphans (each stops
as on SIGTERM: its step, a checkpoint, ``interrupted``), and a second run finishes the sweep. ``kill -9`` of
every process mid-epoch, past a checkpoint, leaves rows written after that checkpoint; the second run
rolls them back before it trains on, so every CSV holds one run's rows, each step once, in order. The
oracle for a point trained alone is an uninterrupted lone run of its config, which it must equal to the
last digit (every CSV value but elapsed_s).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import skipexp_cmd, train_one, write_config

from skipexp.core import config
from skipexp.rundir import runio
from skipexp.training import fit as train_mod

# 64 steps an epoch, logged every 4, 24 epochs: a few seconds a point on one core, long enough that a point
# started a second or two before the other (importing torch) is still far from its end when the test kills
BASE = {"data.n_train": 1024, "data.n_test": 128, "data.input_dim": 8, "model.width": 8,
        "train.batch_size": 16, "train.epochs": 24, "train.lr": 0.02, "log.every": 4}
PER_EPOCH = 64
FILES = ["metrics", "eval", "grad_norms", "act_grad_norms", "act_norms"]

_STARTED: list[tuple[int, str | None]] = []   # (pid, its start time): never a later process that reused the pid


def started(pid: int) -> None:
    _STARTED.append((pid, runio.process_start(pid)))


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while _STARTED:
        pid, start = _STARTED.pop()
        if runio.pid_alive(pid) and runio.process_start(pid) == start:
            os.kill(pid, signal.SIGKILL)


def start(tmp: Path, *args: object, tag: str) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    with open(tmp / f"{tag}.out", "w") as o, open(tmp / f"{tag}.err", "w") as e:
        p = subprocess.Popen(skipexp_cmd() + [str(a) for a in args], stdout=o, stderr=e, env=env)
    started(p.pid)
    return p


def wait_for(cond, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def last_step(run: Path) -> int:
    rows = runio.read_csv(run / "metrics.csv")
    return int(rows[-1]["step"]) if rows else 0


def worker_pid(run: Path) -> int | None:
    try:
        return meta(run)["heartbeat"]["pid"]
    except (OSError, ValueError, KeyError):
        return None


def rows_of(run: Path) -> dict[str, list[list[str]]]:
    """Every CSV of a run as written, without elapsed_s, asserting each is one run's rows: whole rows, steps
    strictly increasing, every log step of the run from 1 to its last once (eval: each epoch's end once)."""
    out = {}
    total = BASE["train.epochs"] * PER_EPOCH
    for name in FILES:
        with open(run / f"{name}.csv", newline="") as f:
            header, *rows = list(csv.reader(f))
        assert all(len(r) == len(header) for r in rows), f"{run.name}/{name}.csv: a short row"
        steps = [int(r[0]) for r in rows]
        want = list(range(PER_EPOCH, total + 1, PER_EPOCH)) if name == "eval" else [1, *range(4, total + 1, 4)]
        assert steps == want, f"{run.name}/{name}.csv: steps {steps[:8]}... are not one run's"
        keep = [i for i, c in enumerate(header) if c != "elapsed_s"]
        out[name] = [[r[i] for i in keep] for r in rows]
    return out


def lone_run(tmp: Path, cfg_path: Path, overrides: list[str]) -> Path:
    """The uninterrupted run of one point's config, trained alone in this process."""
    cfg = config.load(cfg_path, overrides)
    run = train_mod.create_run(cfg, tmp / "lone")
    assert train_one(cfg, run).status == "completed"
    return run


def test_kill_9_of_the_sweep_alone_stops_its_workers_and_a_rerun_finishes_the_sweep(tmp_path):
    cfg = write_config(tmp_path / "k.yaml", BASE)
    args = ["sweep", cfg, "model.depth=2,3", "--jobs", "2", "--out", tmp_path / "runs"]
    root = tmp_path / "runs" / "sweep-k-depth"
    points = [root / "depth=2", root / "depth=3"]
    parent = start(tmp_path, *args, tag="first")
    wait_for(lambda: all(p.is_dir() and last_step(p) >= PER_EPOCH + 8 for p in points), "both points in epoch 2")
    workers = [worker_pid(p) for p in points]
    assert parent.pid not in workers and None not in workers
    for w in workers:
        started(w)
    parent.kill()
    parent.wait()

    # each worker hears its parent die and stops by itself, as on a first Ctrl-C
    wait_for(lambda: not any(runio.pid_alive(w) for w in workers), "the orphaned workers to stop", timeout=30)
    for p in points:
        m = meta(p)
        assert m["status"] == "interrupted", m["status"]
        assert m.get("steps_done", 0) < BASE["train.epochs"] * PER_EPOCH, (json.dumps(m), (p / "train.log").read_text())

    second = start(tmp_path, *args, tag="second")
    assert second.wait(timeout=180) == 0, (tmp_path / "second.err").read_text()
    assert "running in another process" not in (tmp_path / "second.err").read_text()
    for p in points:   # (that a point resumed alone equals its lone run: the next test)
        assert meta(p)["status"] == "completed" and len(meta(p)["resumes"]) == 1
        rows_of(p)


def test_kill_9_of_everything_mid_epoch_then_a_rerun_holds_one_runs_rows(tmp_path):
    """One part of the group is two points trained stacked, the other a point trained alone."""
    cfg = write_config(tmp_path / "k.yaml", BASE)
    args = ["sweep", cfg, "seed=0,1,2", "--jobs", "2", "--out", tmp_path / "runs"]
    root = tmp_path / "runs" / "sweep-k-seed"
    points = [root / f"seed={s}" for s in (0, 1, 2)]
    parent = start(tmp_path, *args, tag="first")
    # past the first checkpoint (epoch 1's end) and mid-way into epoch 2: rows that no checkpoint holds
    wait_for(lambda: all(p.is_dir() and (p / "checkpoints" / "last.pt").exists() and last_step(p) >= PER_EPOCH + 8
                         for p in points), "every point in epoch 2")
    workers = {worker_pid(p) for p in points}
    assert len(workers) == 2 and None not in workers
    for w in workers:
        started(w)
    for pid in (parent.pid, *workers):
        os.kill(pid, signal.SIGKILL)
    parent.wait()
    wait_for(lambda: not any(runio.pid_alive(w) for w in workers), "the workers to die", timeout=30)
    assert all(runio.effective_status(meta(p)) == "crashed" for p in points)
    ahead = {p: last_step(p) - runio.read_csv(p / "eval.csv")[-1]["step"] for p in points}

    second = start(tmp_path, *args, tag="second")
    assert second.wait(timeout=180) == 0, (tmp_path / "second.err").read_text()
    for p in points:
        m = meta(p)
        assert m["status"] == "completed" and [r["previous_status"] for r in m["resumes"]] == ["crashed"]
        if ahead[p] > 0:   # the killed run had logged past its checkpoint: those rows went first
            assert m["resumes"][0]["rows_rolled_back"] > 0
        rows_of(p)
    assert meta(points[0])["trained_with"] == ["seed=0", "seed=1"] and not meta(points[2]).get("vectorized")
    assert rows_of(points[2]) == rows_of(lone_run(tmp_path, cfg, ["seed=2", "log.plots=false"]))
