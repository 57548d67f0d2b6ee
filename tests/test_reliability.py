"""Nothing lost, nothing confusing: real processes, real signals, real files on disk.

Runs are interrupted with SIGINT / SIGTERM / SIGKILL sent by ``Popen.send_signal`` while they train,
then resumed; the oracle is an uninterrupted run of the same config, which the resumed run must match
to the last digit (every CSV value except elapsed_s, and the final weights). Only what needs a process
of its own (signals, a kill, a lock held by another process, the console script's exit status) starts
one; resuming and the other commands run in this process through ``cli``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import cli, skipexp_cmd, train_one, write_config

from skipexp.core import config
from skipexp.core.errors import SkipexpError
from skipexp.rundir import runio
from skipexp.rundir.summary import summarize
from skipexp.training import fit as train_mod
from skipexp.training.checkpoint import load_checkpoint_file

# 96 steps per epoch, logged every 4: long enough to be stopped mid-epoch, short enough to finish fast
# (no plots: no test of these runs looks at them)
RESUME = {"data.n_train": 1536, "data.n_test": 128, "train.batch_size": 16, "train.epochs": 3, "log.every": 4,
          "log.plots": False}
PER_EPOCH, TOTAL = 96, 288
LONG = {**RESUME, "train.epochs": 200}  # a run that is still going when the test stops it
STEP_FILES = ["metrics", "grad_norms", "act_grad_norms", "act_norms"]
ALL_FILES = STEP_FILES + ["eval"]


# --- helpers -------------------------------------------------------------------------------------

_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test():
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


class Proc:
    """A ``skipexp`` process whose output goes to files (a pipe nobody reads could block it)."""

    def __init__(self, tmp: Path, *args: object, tag: str = "p"):
        self.out, self.err = tmp / f"{tag}.out", tmp / f"{tag}.err"
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "80"}  # 80 columns: hints must still be one line
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(skipexp_cmd() + [str(a) for a in args], stdout=o, stderr=e, env=env)
        _STARTED.append(self.p)

    def wait(self, timeout: float = 120) -> int:
        return self.p.wait(timeout)

    def stderr(self) -> str:
        return self.err.read_text()

    def wait_for(self, cond, what: str, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            if self.p.poll() is not None:
                raise AssertionError(f"exited ({self.p.returncode}) before {what}:\n{self.stderr()}")
            time.sleep(0.01)
        self.p.kill()
        raise AssertionError(f"timed out waiting for {what}")


def only_run(out: Path) -> Path:
    runs = [p for p in out.iterdir() if p.is_dir()] if out.exists() else []
    assert len(runs) == 1, runs
    return runs[0]


def start_run(tmp: Path, overrides: dict, tag: str = "p") -> tuple[Proc, Path]:
    cfg = write_config(tmp / f"{tag}.yaml", overrides)
    out = tmp / f"{tag}-runs"
    proc = Proc(tmp, "train", cfg, "--out", out, tag=tag)
    proc.wait_for(lambda: out.exists() and any(p.is_dir() for p in out.iterdir()), "its run folder")
    return proc, only_run(out)


def last_step(run: Path, name: str = "metrics") -> int:
    rows = runio.read_csv(run / f"{name}.csv")
    return int(rows[-1]["step"]) if rows else 0


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows, asserting every row is whole: as many fields as columns, each a number."""
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    for r in rows:
        assert len(r) == len(header), f"{path.name}: short row {r}"
        [float(v) for v in r]
    return header, rows


def values(run: Path) -> dict[str, list[list[str]]]:
    """Every CSV value of a run as written, minus the wall-clock column (the one thing allowed to differ)."""
    out = {}
    for name in ALL_FILES:
        header, rows = csv_rows(run / f"{name}.csv")
        keep = [i for i, c in enumerate(header) if c != "elapsed_s"]
        out[name] = [[header[i] for i in keep]] + [[r[i] for i in keep] for r in rows]
        steps = [int(r[0]) for r in rows]
        assert steps == sorted(set(steps)), f"{name}.csv: duplicate or unordered steps"
    return out


def load_ckpt(run: Path, name: str = "last.pt") -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=True)


def meta(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def assert_same_run(run: Path, ref: Path) -> None:
    got, want = values(run), values(ref)
    for name in ALL_FILES:
        assert got[name] == want[name], f"{name}.csv differs from the uninterrupted run"
    a, b = load_ckpt(run)["model"], load_ckpt(ref)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "final weights differ"


def hint_lines(proc: Proc) -> list[str]:
    return [line for line in proc.stderr().splitlines() if "skipexp resume" in line]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted-then-resumed run must equal."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = config.load(write_config(tmp / "ref.yaml", RESUME))
    run = train_mod.create_run(cfg, tmp / "runs")
    assert train_one(cfg, run).status == "completed"
    return run


# --- 1. exact resume -----------------------------------------------------------------------------

def test_sigint_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path, reference):
    proc, run = start_run(tmp_path, RESUME)
    proc.wait_for(lambda: last_step(run) >= 12, "some logged rows")
    proc.p.send_signal(signal.SIGINT)
    assert proc.wait() == 130, proc.stderr()

    stopped = load_ckpt(run)["step"]
    assert 12 <= stopped < TOTAL and stopped % PER_EPOCH != 0, f"stopped at {stopped}: not mid-epoch"
    assert meta(run)["status"] == "interrupted" and meta(run)["steps_done"] == stopped
    assert hint_lines(proc) == [f"interrupted; continue with: skipexp resume {run}"]

    cli("resume", run, check=0)
    assert_same_run(run, reference)
    m = meta(run)
    assert m["status"] == "completed"
    assert [(r["from_step"], r["previous_status"]) for r in m["resumes"]] == [(stopped, "interrupted")]
    # resuming never truncates: the rows before the stop are the same bytes as before
    assert (run / "train.log").read_text().count("] resume ") == 1


def test_kill_9_keeps_every_row_and_reads_as_crashed_then_resumes_exactly(tmp_path, reference):
    proc, run = start_run(tmp_path, RESUME)
    # past the first checkpoint (end of epoch 1) and into epoch 2
    proc.wait_for(lambda: (run / "checkpoints" / "last.pt").exists() and last_step(run) >= PER_EPOCH + 12,
                  "rows in epoch 2")
    proc.p.kill()
    assert proc.wait() == -signal.SIGKILL

    logged = [1] + list(range(4, TOTAL + 1, 4))
    lasts = []
    for name in STEP_FILES:
        _, rows = csv_rows(run / f"{name}.csv")
        steps = [int(r[0]) for r in rows]
        assert steps == logged[:len(steps)], f"{name}.csv lost or repeated a row"
        lasts.append(steps[-1])
    assert max(lasts) - min(lasts) <= 4, f"files disagree by more than one log step: {lasts}"
    assert max(lasts) >= PER_EPOCH + 12

    m = meta(run)  # parses: it is only ever replaced whole
    assert m["status"] == "running"
    assert runio.effective_status(m) == "crashed"
    assert summarize(run)["status"] == "crashed"

    checkpoint = load_ckpt(run)["step"]
    past = sum(int(r[0]) > checkpoint for name in ALL_FILES for r in csv_rows(run / f"{name}.csv")[1])
    assert checkpoint % PER_EPOCH == 0 and past > 0
    cli("resume", run, check=0)
    assert_same_run(run, reference)
    resumed = meta(run)["resumes"][0]
    assert resumed["previous_status"] == "crashed" and resumed["from_step"] == checkpoint
    # every row past the checkpoint was the killed process's: rolled back, then written again
    assert resumed["rows_rolled_back"] == past


def test_a_run_that_died_before_its_first_checkpoint_resumes_from_the_start(tmp_path, reference):
    class Dies(train_mod.Reporter):  # stands in for a crash in epoch 1: no checkpoint on disk yet
        def on_log(self, row):
            if row["step"] >= 40:
                raise RuntimeError("died")

    cfg = config.load(write_config(tmp_path / "c.yaml", RESUME))
    run = train_mod.create_run(cfg, tmp_path / "runs")
    with pytest.raises(RuntimeError):
        train_one(cfg, run, reporter=Dies())
    assert meta(run)["status"] == "failed" and not (run / "checkpoints").exists()
    assert last_step(run) == 40
    assert train_mod.resume(run).status == "completed"
    assert_same_run(run, reference)
    assert meta(run)["resumes"][0]["from_step"] == 0


def test_resume_is_refused_for_completed_foreign_and_running_runs(tmp_path, reference):
    p = cli("resume", reference, check=2)
    assert p.stderr.strip() == f"error: {reference}: the run is completed; there is nothing to resume"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "meta.json").write_text('{"status": "running"}')
    (foreign / "config.yaml").write_text("lr: 1\n")
    p = cli("resume", foreign, check=2)
    assert p.stderr.strip() == f"error: {foreign}: meta.json was not written by skipexp"

    proc, run = start_run(tmp_path, LONG)
    proc.wait_for(lambda: last_step(run) >= 4, "some logged rows")
    p = cli("resume", run, check=2)
    assert p.stderr.strip() == f"error: {run}: the run is still running (pid {proc.p.pid})"
    proc.p.send_signal(signal.SIGTERM)  # SIGTERM behaves as the first Ctrl-C
    assert proc.wait() == 130, proc.stderr()
    m, ck = meta(run), load_ckpt(run)
    assert m["status"] == "interrupted" and ck["step"] == m["steps_done"]
    assert hint_lines(proc) == [f"interrupted; continue with: skipexp resume {run}"]
    assert "resumes" not in m, "a refused resume must not touch meta.json"


# --- 2. signals ----------------------------------------------------------------------------------

def _seed_runs(tmp: Path, tag: str) -> tuple[Proc, list[Path]]:
    cfg = write_config(tmp / f"{tag}.yaml", {**LONG, "name": "s"})
    out = tmp / f"{tag}-runs"
    proc = Proc(tmp, "train", cfg, "seed=[0,1,2]", "--out", out, tag=tag)
    proc.wait_for(lambda: out.exists() and len([p for p in out.iterdir() if p.is_dir()]) == 3, "three folders")
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [r.name[-6:] for r in runs] == ["-seed0", "-seed1", "-seed2"]
    proc.wait_for(lambda: all(last_step(r) >= 8 for r in runs), "rows of every seed")
    return proc, runs


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_on_several_seeds_names_every_seeds_folder_in_one_command(tmp_path, presses):
    """The hint is one command that resumes every seed, after one Ctrl-C (checkpoints written) and after two
    (quit at once: every folder marked interrupted)."""
    proc, runs = _seed_runs(tmp_path, f"p{presses}")
    proc.p.send_signal(signal.SIGINT)
    if presses == 2:
        time.sleep(0.05)
        proc.p.send_signal(signal.SIGINT)
    assert proc.wait() == 130, proc.stderr()
    want = "interrupted; continue with: skipexp resume " + " ".join(map(str, runs))
    assert hint_lines(proc) == [want], proc.stderr()
    assert [meta(r)["status"] for r in runs] == ["interrupted"] * 3
    if presses == 1:   # the hint, run as it is, resumes them all in one process (a step from the end, to be quick)
        env = {**os.environ, "PATH": f"{Path(skipexp_cmd()[0]).parent}:{os.environ['PATH']}"}
        for r in runs:
            (r / "config.yaml").write_text((r / "config.yaml").read_text().replace("epochs: 200", "epochs: 1"))
            m = meta(r)
            m["total_steps"] = PER_EPOCH
            (r / "meta.json").write_text(json.dumps(m))
        done = subprocess.run(want.split(": ", 1)[1], shell=True, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert [meta(r)["status"] for r in runs] == ["completed"] * 3

def test_second_sigint_exits_at_once_and_corrupts_nothing(tmp_path):
    proc, run = start_run(tmp_path, {**LONG, "log.plots": True})
    proc.wait_for(lambda: (run / "checkpoints" / "last.pt").exists(), "the first checkpoint")
    proc.p.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.p.send_signal(signal.SIGINT)
    assert proc.wait() == 130
    for name in ALL_FILES:
        csv_rows(run / f"{name}.csv")
    assert meta(run)["status"] == "interrupted"
    assert load_ckpt(run)["step"] >= PER_EPOCH  # whole: the old checkpoint or the new one
    for png in (run / "plots").glob("*.png") if (run / "plots").exists() else []:
        assert png.read_bytes()[-8:] == b"IEND\xaeB`\x82", f"{png.name} is cut short"


def test_stop_flag_first_signal_asks_second_exits_immediately(tmp_path):
    """The CLI's handler alone, in a process that never finishes its 'step' by itself."""
    script = ("import time\nfrom skipexp.cli import StopFlag\ns = StopFlag().install()\nprint('ready', flush=True)\n"
              "while not s():\n    time.sleep(0.01)\nprint('stop requested', flush=True)\ntime.sleep(600)\n")
    out = tmp_path / "out"
    with open(out, "w") as f:
        p = subprocess.Popen([sys.executable, "-c", script], stdout=f, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while "ready" not in out.read_text():
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        while "stop requested" not in out.read_text():
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.01)
        time.sleep(0.2)
        assert p.poll() is None, "the first signal must only ask to stop"
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 130
        assert time.monotonic() - t0 < 5
    finally:
        if p.poll() is None:
            p.kill()


def test_effective_status_tells_crashed_from_running(tmp_path):
    me = runio.host()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = {"pid": child.pid, "host": me, "started": runio.process_start(child.pid), "time": time.time()}
        assert runio.effective_status({"status": "running", "heartbeat": alive}) == "running"
        # the same pid now held by another process (pid reuse, e.g. after a container restart)
        reused = {**alive, "started": "1"}
        assert runio.effective_status({"status": "running", "heartbeat": reused}) == "crashed"
    finally:
        child.kill()
        child.wait()
    assert runio.effective_status({"status": "running", "heartbeat": alive}) == "crashed"
    assert runio.effective_status({"status": "running"}) == "crashed"  # no heartbeat at all
    other = {"host": me + "-elsewhere", "pid": 1}
    assert runio.effective_status({"status": "running", "heartbeat": {**other, "time": time.time()}}) == "running"
    old = time.time() - runio.STALE_AFTER_S - 1
    assert runio.effective_status({"status": "running", "heartbeat": {**other, "time": old}}) == "crashed"
    for s in ("completed", "diverged", "interrupted", "failed"):
        assert runio.effective_status({"status": s}) == s


# --- 3. divergence -------------------------------------------------------------------------------

def test_huge_lr_diverges_with_exit_0_and_marked_plots(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", {"log.every": 1, "log.plots": True})
    p = cli("train", cfg, "train.lr=1e6", "--out", tmp_path / "runs", check=0)
    run = only_run(tmp_path / "runs")
    m, s = meta(run), json.loads((run / "summary.json").read_text())
    assert m["status"] == s["status"] == "diverged"
    assert isinstance(m["diverged_at_step"], int) and s["diverged_at_step"] == m["diverged_at_step"]
    assert "diverged" in p.stdout
    rows = runio.read_csv(run / "metrics.csv")
    assert int(rows[-1]["step"]) == m["diverged_at_step"]
    for f in ("loss.png", "grad_norms.png", "grad_heatmap.png"):
        assert (run / "plots" / f).stat().st_size > 1000
    for ck in (run / "checkpoints").glob("*.pt") if (run / "checkpoints").exists() else []:
        assert all(torch.isfinite(t).all() for t in load_ckpt(run, ck.name)["model"].values())


def test_divergence_stops_at_first_nonfinite_step_and_keeps_last_finite_checkpoint(tmp_path):
    # sgd at lr 1 on this tiny task blows up in epoch 3: after two epoch-end checkpoints
    raw = write_config(tmp_path / "c.yaml", {"train.lr": 1.0, "train.epochs": 6, "data.n_train": 256,
                                             "data.n_test": 64, "log.every": 1})
    cfg = config.load(raw)
    run = train_mod.create_run(cfg, tmp_path / "runs")
    result = train_one(cfg, run)
    assert result.status == "diverged"
    at = meta(run)["diverged_at_step"]
    rows = runio.read_csv(run / "metrics.csv")
    finite = [math.isfinite(r["train_loss"]) and math.isfinite(r["grad_norm_total"]) for r in rows]
    # the oracle: the first logged row (log.every 1) with a non-finite loss or gradient norm
    assert at == int(rows[finite.index(False)]["step"]) == int(rows[-1]["step"])
    per_epoch = 256 // 64
    assert at > 2 * per_epoch, "premise: the run diverges after two checkpoints"
    ck = load_ckpt(run)
    assert ck["step"] == (at - 1) // per_epoch * per_epoch
    assert all(torch.isfinite(t).all() for t in ck["model"].values())
    assert meta(run)["steps_done"] == at - 1


# --- 4. concurrency ------------------------------------------------------------------------------

_RACE = """\
import sys, time
from pathlib import Path
from skipexp.rundir import runio
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all at once
print(runio.create_run_dir(Path(sys.argv[1]), "same", stamp=sys.argv[2]))
"""


def test_same_second_run_dirs_are_exclusive(tmp_path):
    # eight processes of their own (not forks of this one: a fork of a process with threads can deadlock)
    # create a folder of the same name in the same second, released together
    start = str(time.time() + 2.0)
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path), "20260101-000000", start],
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    dirs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8
    assert sorted(Path(d).name for d in dirs) == ["20260101-000000-same"] + [
        f"20260101-000000-same-{n}" for n in range(2, 9)]


def test_two_trains_of_one_config_at_once_get_two_folders(tmp_path):
    """The whole command in parallel processes; test_same_second_run_dirs_are_exclusive races eight
    processes on the folder names themselves, which is where a clash would come from."""
    n = 2
    cfg = write_config(tmp_path / "c.yaml", {"train.steps": 2, "data.n_train": 128, "data.n_test": 32,
                                             "log.plots": False})
    out = tmp_path / "runs"
    procs = [Proc(tmp_path, "train", cfg, "--out", out, tag=f"p{i}") for i in range(n)]
    codes = [p.wait(300) for p in procs]
    assert codes == [0] * n, [p.stderr() for p in procs]
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == n
    assert {meta(r)["status"] for r in runs} == {"completed"}
    assert len({meta(r)["pid"] for r in runs}) == n  # each folder written by exactly one process
    printed = {p.out.read_text().strip().splitlines()[-1] for p in procs}
    assert printed == {str(r) for r in runs}


def test_a_run_folder_takes_one_process_at_a_time(tmp_path):
    lock = runio.RunLock(tmp_path)
    with pytest.raises(SkipexpError, match="another skipexp process"):
        runio.RunLock(tmp_path)
    lock.release()
    runio.RunLock(tmp_path).release()


# --- checkpoint cadence --------------------------------------------------------------------------

def _train_tiny(tmp: Path, checkpoint: str, stop_after: int | None = None) -> tuple[Path, str]:
    cfg = config.load(write_config(tmp / f"{checkpoint}.yaml", {"log.checkpoint": checkpoint, "train.epochs": 3}))
    run = train_mod.create_run(cfg, tmp / "runs")
    calls = iter(range(10**6))
    stop = (lambda: next(calls) >= stop_after) if stop_after else (lambda: False)
    return run, train_one(cfg, run, should_stop=stop).status


@pytest.mark.parametrize("checkpoint, files", [
    ("none", set()), ("last", {"last.pt"}), ("every_epoch", {"last.pt", "epoch-1.pt", "epoch-2.pt", "epoch-3.pt"})])
def test_checkpoint_cadence(tmp_path, checkpoint, files):
    run, status = _train_tiny(tmp_path, checkpoint)
    assert status == "completed"
    found = {p.name for p in (run / "checkpoints").iterdir()} if (run / "checkpoints").exists() else set()
    assert found == files
    per_epoch = 512 // 64
    for name in files:
        want = 3 * per_epoch if name == "last.pt" else int(name[6:-3]) * per_epoch
        assert load_ckpt(run, name)["step"] == want


def test_interrupted_without_checkpoints_says_why_it_cannot_resume(tmp_path):
    run, status = _train_tiny(tmp_path, "none", stop_after=3)
    assert status == "interrupted" and not (run / "checkpoints").exists()
    p = cli("resume", run, check=2)
    assert p.stderr.strip() == (f"error: {run}: this run was trained with log.checkpoint: none, so it kept no "
                                "checkpoint to resume from; train it again (log.checkpoint: last keeps one)")


# --- unexpected failures -------------------------------------------------------------------------

def test_failure_inside_a_run_is_failed_with_traceback(tmp_path):
    class Broken(train_mod.Reporter):
        def on_log(self, row):
            if row["step"] >= 4:
                raise RuntimeError("reporter broke")

    cfg = config.load(write_config(tmp_path / "c.yaml"))
    run = train_mod.create_run(cfg, tmp_path / "runs")
    with pytest.raises(RuntimeError, match="reporter broke"):
        train_one(cfg, run, reporter=Broken())
    assert meta(run)["status"] == "failed"
    log = (run / "train.log").read_text()
    assert "Traceback (most recent call last)" in log and "RuntimeError: reporter broke" in log
    values(run)  # what was logged before the failure is whole


def test_failure_in_the_real_command_exits_1(tmp_path):
    proc, run = start_run(tmp_path, LONG)
    proc.wait_for(lambda: last_step(run) >= 4, "some logged rows")
    assert not (run / "checkpoints").exists(), "premise: still in epoch 1"
    (run / "checkpoints").write_text("a file where the checkpoint folder goes")
    proc.p.send_signal(signal.SIGINT)  # the stop writes a checkpoint, which now cannot be written
    assert proc.wait() == 1
    err = [line for line in proc.stderr().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "FileExistsError" in err[0] and err[0].endswith(f"(traceback in {run / 'train.log'})")
    assert "Traceback" not in proc.stderr()
    assert meta(run)["status"] == "failed"
    assert "FileExistsError" in (run / "train.log").read_text()


# --- 6. disk -------------------------------------------------------------------------------------

# the command under a 16 KiB file-size limit, set by a fresh interpreter that then execs it (a preexec_fn
# would run Python in a fork of this process, whose other threads' locks can deadlock it); SIGXFSZ is
# ignored across the exec, so a write past the limit fails with EFBIG
_LIMITED = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (16_384, 16_384)); os.execv(sys.argv[1], sys.argv[1:])")


def test_out_that_cannot_take_a_file_fails_before_training(tmp_path, tiny_config):
    out = tmp_path / "runs"
    p = subprocess.run([sys.executable, "-c", _LIMITED, *skipexp_cmd(), "train", str(tiny_config), "--out", str(out)],
                       capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == f"error: {out}: --out: cannot write here: File too large"
    assert not out.exists()  # the folder it made for the run is removed again: bad input leaves nothing


@pytest.fixture
def tmpfs(tmp_path):
    """A tiny tmpfs of our own, where the system lets us mount one (root, not in every container)."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def test_read_only_and_full_out_fail_before_training(tmp_path, tiny_config, tmpfs):
    ro = tmpfs("ro", "ro,size=1m")
    p = cli("train", tiny_config, "--out", ro, check=2)
    assert p.stderr.strip() == f"error: {ro}: --out: cannot write here: Read-only file system"
    full = tmpfs("full", "size=32k")
    p = cli("train", tiny_config, "--out", full / "runs", check=2)
    assert p.stderr.strip() == f"error: {full / 'runs'}: --out: cannot write here: No space left on device"
    assert not (full / "runs").exists()  # made for the run, removed again


# --- 7. loading runs no code -----------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"model": {}, "x": _Payload(marker)}, tmp_path / "last.pt")
    with pytest.raises(SkipexpError, match="unreadable checkpoint"):
        load_checkpoint_file(tmp_path / "last.pt")
    assert not marker.exists()
