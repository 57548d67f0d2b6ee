"""A run's numbers do not depend on how it was scheduled: the oracle, in the chaotic regime.

One config (SGD with momentum 0.9 at lr 0.05 on an 8-block net, 2,048 steps) trained as seed 0 alone is
the reference. Any difference in the last bit of any step grows: with the arithmetic of a stack whose
rounding depended on its size, this config's seed 0 trained beside seeds 1 and 2 logged another loss from
step 8 and ended at twice the lone run's final loss. So the runs below, each scheduled differently, must
equal the reference cell by cell (every CSV value but elapsed_s, summary.json, the last checkpoint):

- stacked with other seeds, killed with SIGKILL mid-epoch, then resumed alone with ``skipexp resume``;
- a point of a sweep whose one group mixes seeds, learning rates and a plain net, interrupted with
  SIGINT mid-epoch and resumed by running the sweep again.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import assert_same_numbers, cli, skipexp_cmd, write_config

from skipexp.rundir import files, runio

# 32 steps per epoch, 64 epochs: 2,048 steps, logged every 8; a small test split keeps evaluation cheap
CHAOTIC = {"model.depth": 8, "model.width": 32, "model.skip.kind": "identity", "model.init": "default",
           "data.n_train": 2048, "data.n_test": 256, "train.batch_size": 64, "train.epochs": 64,
           "train.lr": 0.05, "train.momentum": 0.9, "train.threads": 1, "log.every": 8, "log.plots": False}
TOTAL = 2048

pytestmark = pytest.mark.xdist_group("same-numbers")   # one worker trains the reference once


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Seed 0 of CHAOTIC trained alone, uninterrupted."""
    tmp = tmp_path_factory.mktemp("reference")
    cli("train", write_config(tmp / "c.yaml", CHAOTIC), "seed=0", "--run-dir", tmp / "alone", check=0)
    assert files.read_json(tmp / "alone" / "meta.json")["steps_done"] == TOTAL
    return tmp / "alone"


def start(tmp: Path, *args: object) -> subprocess.Popen:
    log = open(tmp / "process.log", "w")
    return subprocess.Popen(skipexp_cmd() + [str(a) for a in args], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "NO_COLOR": "1"})


def stop_mid_epoch(p: subprocess.Popen, run_dir: Path, sig: int, after: int = 1000) -> None:
    """Send ``sig`` to ``p`` once ``run_dir`` has logged step ``after`` (a checkpoint lies behind it)."""
    deadline = time.monotonic() + 240
    while True:
        rows = runio.read_csv(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else []
        if rows and rows[-1]["step"] >= after and (run_dir / "checkpoints" / "last.pt").is_file():
            break
        assert p.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline, "the run did not get going"
        time.sleep(0.02)
    p.send_signal(sig)
    p.wait(timeout=120)


def test_seeds_stacked_then_killed_and_each_resumed_alone_equal_the_lone_run(tmp_path, reference):
    cfg = write_config(tmp_path / "c.yaml", CHAOTIC)
    p = start(tmp_path, "train", cfg, "seed=[0,1]", "--out", tmp_path / "runs")
    seed0 = tmp_path / "runs"
    deadline = time.monotonic() + 60
    while not any(seed0.glob("*-seed0")):
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    seed0 = next(seed0.glob("*-seed0"))
    stop_mid_epoch(p, seed0, signal.SIGKILL)
    steps = runio.read_csv(seed0 / "metrics.csv")[-1]["step"]
    assert 1000 <= steps < TOTAL and steps % 32, f"killed at step {steps}: not mid-epoch"
    assert files.read_json(seed0 / "meta.json")["vectorized"] is True
    cli("resume", seed0, check=0)   # alone: the stack it was trained in is gone
    assert_same_numbers(seed0, reference)


def test_a_sweep_point_of_a_mixed_group_interrupted_and_resumed_equals_the_lone_run(tmp_path, reference):
    write_config(tmp_path / "c.yaml", CHAOTIC)
    sweep = tmp_path / "mixed.yaml"
    # one group of two: the reference's config, and a plain net of another seed with its own lr
    sweep.write_text(yaml.safe_dump({"name": "mixed", "base": "c.yaml", "grid": {"member": {
        "ref": {"seed": 0}, "plain": {"seed": 1, "model.skip.kind": "none", "train.lr": 0.02}}}}))
    out = tmp_path / "runs"
    listing = cli("sweep", sweep, "--out", out, "--list", check=0).stdout
    assert listing.splitlines()[0].startswith("# group 1 (2 points)"), listing
    point = out / "sweep-mixed" / "member=ref"
    stop_mid_epoch(start(tmp_path, "sweep", sweep, "--out", out), point, signal.SIGINT)
    meta = files.read_json(point / "meta.json")
    assert meta["status"] == "interrupted" and len(meta["trained_with"]) == 2
    assert meta["steps_done"] % 32, "interrupted at an epoch's end: not mid-epoch"
    cli("sweep", sweep, "--out", out, check=0)
    assert files.read_json(point / "meta.json")["resumes"]
    assert_same_numbers(point, reference)
