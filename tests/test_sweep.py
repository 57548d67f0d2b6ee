"""skipexp sweep: grid expansion, point names, resuming, --jobs, and the Makefile's commands."""
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, assert_same_numbers, cli, skipexp_cmd, write_config

from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import backends, local, spec
from skipexp.rundir import reuse, runio

# the tests may themselves run under `make test`: its MAKEFLAGS and MAKELEVEL must not reach the makes below
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def _sweep_file(tmp_path: Path, grid: dict, name: str = "t") -> Path:
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 1})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": "tiny.yaml", "grid": grid}, sort_keys=False))
    return path


def test_grid_expands_to_named_points_with_self_contained_commands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _sweep_file(tmp_path, {"model.depth": [2, 4], "model.skip.kind": ["none", "identity"],
                                  "seed": [0, 1], "train.lr": 0.1})
    sw = spec.load(path)
    pts = spec.points(sw, Path("runs"))
    assert len(pts) == 8
    assert pts[0].name == "depth=2,skip.kind=none,seed=0,train.lr=0.1"
    assert pts[-1].name == "depth=4,skip.kind=identity,seed=1,train.lr=0.1"
    assert pts[0].values == {"model.depth": 2, "model.skip.kind": "none", "seed": 0, "train.lr": 0.1}
    assert pts[0].run_dir == Path("runs/sweep-t/depth=2,skip.kind=none,seed=0,train.lr=0.1")
    assert pts[0].argv == ["skipexp", "train", "tiny.yaml", "model.depth=2", "model.skip.kind=none", "seed=0",
                           "train.lr=0.1", "--run-dir", str(pts[0].run_dir), "--resume"]
    assert spec.point_name({"model.width": [64, 32], "model.skip.kind": "none"}) == "width=64+32,skip.kind=none"


@pytest.mark.parametrize("grid,message", [
    ({"model.depth": [2, 0]}, "grid.model.depth: point depth=0: must be > 0, got 0"),
    ({"model.skip.knd": ["none"]}, 'did you mean "model.skip.kind"'),
])
def test_a_bad_point_fails_before_anything_runs(tmp_path, grid, message):
    path = _sweep_file(tmp_path, grid)
    with pytest.raises(SkipexpError, match=message.replace(".", r"\.")):
        spec.points(spec.load(path), tmp_path / "runs")
    (tmp_path / "typo.yaml").write_text("name: t\nbase: tiny.yaml\ngird: {seed: [0]}\n")
    p = cli("sweep", tmp_path / "typo.yaml", "--out", tmp_path / "runs", check=2)
    assert p.stderr.strip() == (f'error: {tmp_path / "typo.yaml"}: gird: unknown key (did you mean "grid"?); '
                                "a sweep file has name, base, grid, overrides, select, baseline, slurm")
    assert not (tmp_path / "runs").exists()


def test_settle_refuses_a_folder_holding_another_config(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump({"model": {"depth": 4}, "train": {"threads": 2}}))
    (d / "meta.json").write_text(json.dumps({"tool": "skipexp", "status": "completed"}))
    assert reuse.reuse_or_move_aside(d, {"model": {"depth": 4}, "train": {"threads": 1}}) == ("done", None)
    with pytest.raises(SkipexpError, match="holds a run with model.depth=4, not 8"):
        reuse.reuse_or_move_aside(d, {"model": {"depth": 8}, "train": {"threads": 1}})
    (d / "meta.json").write_text(json.dumps({"tool": "skipexp", "status": "failed"}))  # no checkpoint
    state, moved = reuse.reuse_or_move_aside(d, {})
    assert state == "stale" and not d.exists() and moved.name.startswith("p.stale-") and moved.is_dir()


def _mtimes(root: Path) -> dict[str, float]:
    return {p.name: (p / "meta.json").stat().st_mtime_ns for p in root.iterdir() if (p / "meta.json").exists()}


def test_sweep_runs_resumes_and_skips_what_is_done(tmp_path):
    path = _sweep_file(tmp_path, {"model.depth": [2, 4], "model.skip.kind": ["none", "identity"]})
    out = tmp_path / "runs"
    p = cli("sweep", path, "--jobs", "2", "--out", out, check=0)
    root = out / "sweep-t"
    rows = (root / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("model.depth,model.skip.kind,point,status,")
    assert len(rows) == 5 and all(",completed," in r for r in rows[1:])
    assert (root / "plots" / "depth.png").is_file() and (root / "sweep.yaml").is_file()
    assert "depth=4,skip.kind=identity" in p.stderr  # progress over points
    for d in root.glob("depth=*"):  # a group per depth: none and identity of one shape train together
        meta = json.loads((d / "meta.json").read_text())
        assert meta["threads"] == 1 and meta["vectorized"] is True and len(meta["seeds_together"]) == 2

    # leave the sweep as an interruption would: one point interrupted (with its checkpoint), one never
    # started, one folder with nothing to resume in it
    names = sorted(spec.point_name(v) for v in (
        {"model.depth": 2, "model.skip.kind": "none"}, {"model.depth": 2, "model.skip.kind": "identity"},
        {"model.depth": 4, "model.skip.kind": "none"}, {"model.depth": 4, "model.skip.kind": "identity"}))
    done, interrupted, missing, stale = names
    meta_path = root / interrupted / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["status"] = "interrupted"
    meta_path.write_text(json.dumps(meta))
    subprocess.run(["rm", "-r", str(root / missing)], check=True)
    subprocess.run(["rm", "-r", str(root / stale)], check=True)
    (root / stale).mkdir()
    before = _mtimes(root)

    # the Makefile's view of it: both groups have a point to run, with their --list command
    mk = cli("sweep", path, "--jobs", "2", "--out", out, "--list", "--format", "make", check=0).stdout
    (tmp_path / "sweep.mk").write_text(mk)
    waits = subprocess.run(["make", "--no-print-directory", "-f", str(tmp_path / "sweep.mk"), "-f", "-", "wait"],
                           input="wait:\n\t@echo $$OMP_WAIT_POLICY\n", capture_output=True, text=True, check=True,
                           env={k: v for k, v in MAKE_ENV.items() if k != "OMP_WAIT_POLICY"}).stdout
    assert waits.strip() == "PASSIVE"   # groups that make runs at once wait passively, unless the user set one
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-f", str(tmp_path / "sweep.mk"),
                          f"SKIPEXP={skipexp_cmd()[0]}", "points"],
                         env=MAKE_ENV, capture_output=True, text=True, check=True).stdout
    listed = cli("sweep", path, "--jobs", "2", "--out", out, "--list", check=0).stdout.splitlines()
    assert listed[0] == f"# group 1 (2 points): {interrupted} {done}"  # grid order within the group
    commands = [line for line in listed if not line.startswith("#")]
    assert [shlex.split(c)[1:] for c in commands] == [
        ["sweep", str(root / "sweep.yaml"), "--group", str(n), "--out", str(out)] for n in (1, 2)]
    assert [shlex.split(line)[1:] for line in dry.splitlines()] == [shlex.split(c)[1:] for c in commands]

    cli("sweep", path, "--jobs", "2", "--out", out, check=0)
    after = _mtimes(root)
    assert after[done] == before[done]  # the completed point was not touched
    assert "resumes" not in json.loads((root / done / "meta.json").read_text())
    assert len(json.loads((root / interrupted / "meta.json").read_text())["resumes"]) == 1
    assert json.loads((root / missing / "meta.json").read_text())["status"] == "completed"
    assert json.loads((root / stale / "meta.json").read_text())["status"] == "completed"
    assert len(list(root.glob(f"{stale}.stale-*"))) == 1
    rows = (root / "summary.csv").read_text().splitlines()
    assert len(rows) == 5 and all(",completed," in r for r in rows[1:])

    # once everything is done, make has nothing left to run
    mk = cli("sweep", path, "--out", out, "--list", "--format", "make", check=0).stdout
    (tmp_path / "sweep.mk").write_text(mk)
    dry = subprocess.run(["make", "--no-print-directory", "-n", "-f", str(tmp_path / "sweep.mk"),
                          "SKIPEXP=skipexp", "points"],
                         env=MAKE_ENV, capture_output=True, text=True, check=True).stdout
    assert "--group" not in dry


def test_a_listed_command_runs_its_group_and_is_safe_to_repeat(tmp_path):
    path = _sweep_file(tmp_path, {"model.depth": [2]})
    out = tmp_path / "runs"
    comment, line = cli("sweep", path, "--out", out, "--list", check=0).stdout.splitlines()
    assert comment == "# group 1 (1 point): depth=2"
    argv = shlex.split(line)
    assert argv[:2] == ["skipexp", "sweep"] and "--group" in argv
    cli(*argv[1:], check=0)
    run_dir = out / "sweep-t" / "depth=2"
    assert json.loads((run_dir / "meta.json").read_text())["status"] == "completed"
    mtime = (run_dir / "meta.json").stat().st_mtime_ns
    (run_dir / "summary.json").unlink()  # as when make is interrupted while the run writes it
    p = cli(*argv[1:], check=0)
    assert "already completed; nothing to do" in p.stderr
    assert (run_dir / "meta.json").stat().st_mtime_ns == mtime
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    p = cli("report", out / "sweep-t", check=0)
    assert "depth=2" not in p.stderr and "completed" in p.stdout
    for args, message in ((["--group", "2"], "--group: the sweep has 1 group(s) (1-1), no group 2"),
                          (["--part", "1/2"], "--part: only means something with --group"),
                          (["--group", "1", "--part", "2"], "--part: must be i/k"),
                          (["--group", "1", "--list"], "--group: runs one group here")):
        p = cli("sweep", path, "--out", out, *args, check=2)
        assert message in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_make_n_sweep_shows_every_group_command(tmp_path):
    path = _sweep_file(tmp_path, {"model.depth": [2, 4], "seed": [0, 1]})
    out = tmp_path / "runs"
    cmd = skipexp_cmd()[0]
    p = subprocess.run(["make", "--no-print-directory", "-n", "-j2", "-C", str(REPO), "sweep", f"SWEEP={path}",
                        f"OUT={out}", f"SKIPEXP={cmd}"], env=MAKE_ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    groups = [line for line in p.stdout.splitlines() if "--group" in line]
    assert groups == [f"{cmd} sweep {out}/sweep-t/sweep.yaml --group {n} --out {out}" for n in (1, 2)]
    assert any(line.startswith(f"{cmd} sweep {path} --jobs 2") for line in p.stdout.splitlines())
    assert not list((out / "sweep-t").glob("depth=*"))  # a dry run trains nothing


def test_a_sweep_point_equals_a_lone_train_of_its_command(tmp_path):
    # the 12-point shape of the README's measurement, tiny: kinds x lrs x seeds, one group split over two jobs
    path = _sweep_file(tmp_path, {"model.skip.kind": ["none", "identity"], "train.lr": [0.05, 0.1], "seed": [0, 2]})
    out = tmp_path / "runs"
    p = cli("sweep", path, "--jobs", "2", "--out", out, check=0)
    assert "8 points" in p.stdout
    pts = spec.points(spec.load(path), out)
    pids = []
    for pt in pts:
        meta = json.loads((pt.run_dir / "meta.json").read_text())
        assert meta["status"] == "completed" and len(meta["seeds_together"]) == 4
        pids.append(meta["pid"])
    assert len(set(pids[:4])) == len(set(pids[4:])) == 1 and pids[0] != pids[4]  # two processes, four points each
    for pt in (pts[0], pts[-1]):  # the point's own command, alone, into another folder
        at = pt.argv.index("--run-dir")
        lone = tmp_path / "lone" / pt.name
        cli(*pt.argv[1:at], "--run-dir", lone, check=0)
        assert_same_numbers(pt.run_dir, lone)


def test_ctrl_c_interrupts_every_point_of_a_running_group_and_a_rerun_resumes_them(tmp_path):
    import signal
    import time

    path = _sweep_file(tmp_path, {"seed": [0, 1]})
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 400})  # minutes: it is stopped long before
    out = tmp_path / "runs"
    proc = subprocess.Popen(skipexp_cmd() + ["sweep", str(path), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    dirs = [out / "sweep-t" / f"seed={s}" for s in (0, 1)]
    deadline = time.monotonic() + 120
    while not all((d / "checkpoints" / "last.pt").is_file() for d in dirs):  # both going, in one process
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    metas = [json.loads((d / "meta.json").read_text()) for d in dirs]
    assert [m["status"] for m in metas] == ["interrupted", "interrupted"]
    assert metas[0]["pid"] == metas[1]["pid"] and metas[0]["steps_done"] == metas[1]["steps_done"]

    p = cli("sweep", path, "--out", out, "--list", check=0)
    assert p.stdout.splitlines()[0] == "# group 1 (2 points): seed=0 seed=1"
    # a point to resume starts mid-run, so each resumes alone; shorten the wait by stopping again soon
    proc = subprocess.Popen(skipexp_cmd() + ["sweep", str(path), "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    while len(json.loads((dirs[0] / "meta.json").read_text()).get("resumes", [])) < 1:
        assert proc.poll() is None and time.monotonic() < deadline + 120, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    meta = json.loads((dirs[0] / "meta.json").read_text())
    assert meta["status"] == "interrupted" and meta["resumes"][0]["previous_status"] == "interrupted"


def test_a_sweep_waits_for_points_another_process_trains_then_runs_what_it_left(tmp_path, monkeypatch):
    """A point whose folder is held by a live process (a killed sweep's worker, still stopping) is waited
    for, not reported as running and left: once that process is gone the point is settled and run."""

    monkeypatch.chdir(tmp_path)
    sw = spec.load(_sweep_file(tmp_path, {"seed": [0, 1]}))
    pts = spec.points(sw, Path("runs"))
    other = subprocess.Popen(["sleep", "30"])
    try:
        held = pts[1].run_dir
        held.mkdir(parents=True)
        (held / "config.yaml").write_text(yaml.safe_dump(pts[1].cfg.to_dict()))
        (held / "meta.json").write_text(json.dumps({"tool": "skipexp", "status": "running", "heartbeat": {
            "host": runio.host(), "pid": other.pid, "started": runio.process_start(other.pid), "time": 0}}))
        ran, waited = [], []

        def backend(groups, jobs, listener, should_stop):
            ran.append([p.name for g in groups for p in g.points])
            if len(ran) == 1:    # the other process lets go of its point while this sweep trains the rest
                other.kill()
                other.wait()
            return [local.PointResult(p, "completed", 0) for g in groups for p in g.points]

        class Listener(local.Listener):
            def on_wait(self, points):
                waited.append([p.name for p in points])

        monkeypatch.setitem(backends.BACKENDS, "local", backend)
        outcome = backends.run(sw, pts, Path("runs"), 1, listener=Listener())
    finally:
        other.kill()
        other.wait()
    assert ran == [["seed=0"], ["seed=1"]] and waited == [["seed=1"]] and outcome.busy == []
    assert reuse.folder_state(held) == "stale"   # crashed before a checkpoint: its group process starts it afresh


def test_a_point_written_before_a_config_key_existed_is_kept_not_taken_for_another_experiment(tmp_path):
    """A run folder's config.yaml written by an older skipexp lacks the keys added since; they read as their
    defaults (what the run was trained with), so a rerun keeps the point and ``train --resume`` keeps the run."""
    path = _sweep_file(tmp_path, {"model.depth": [2]})
    out = tmp_path / "runs"
    cli("sweep", path, "--out", out, check=0)
    point = next((out / "sweep-t").glob("depth=*"))
    raw = yaml.safe_load((point / "config.yaml").read_text())
    del raw["data"]["augment"], raw["model"]["block"]   # keys a later version added, with their defaults
    (point / "config.yaml").write_text(yaml.safe_dump(raw))
    before = (point / "metrics.csv").read_text()
    again = cli("sweep", path, "--out", out, check=0)
    assert "already done" in again.stderr and (point / "metrics.csv").read_text() == before
    cli("train", tmp_path / "tiny.yaml", "model.depth=2", "--run-dir", point, "--resume", check=0)
    assert (point / "metrics.csv").read_text() == before
