"""--backend slurm: groups of points as a job array through submitit, here through its local executor (real
processes, no Slurm); the array script of --list --format sbatch; the slurm: section and its flags."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest
from conftest import cli, write_config

from skipexp.rundir import files

submitit = pytest.importorskip("submitit", reason="the slurm backend needs submitit (pip install 'skipexp[slurm]')")


def test_sbatch_script_from_the_section_and_flags_runs_a_group(tmp_path):
    base = write_config(tmp_path / "base.yaml", {"log.html": False})
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase: {base}\ngrid:\n  model.depth: [2, 3]\n  seed: [0, 1]\n"
                     "slurm: {partition: cpu, cpus: 2, mem: 2G, sbatch: {account: lab, qos: low}}\n")
    out = tmp_path / "runs"
    script = cli("sweep", sweep, "--list", "--format", "sbatch", "--partition", "gpu", "--time", "1:30:00",
                 "--gpus", "1", "--sbatch", "qos=high", "--jobs", "2", "--out", out, check=0).stdout
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    sb = [x.removeprefix("#SBATCH ") for x in lines if x.startswith("#SBATCH ")]
    assert sb == ["--job-name=skipexp-s", "--array=1-2%2", f"--output={(out / 'sweep-s').absolute()}/slurm/%A_%a.out",
                  "--signal=B:INT@120", "--cpus-per-task=2", "--partition=gpu", "--time=1:30:00",
                  "--gpus-per-task=1", "--mem=2G", "--account=lab", "--qos=high"]   # a flag wins over the section
    assert "slurm:" in (out / "sweep-s" / "sweep.yaml").read_text()   # the folder's sweep file keeps the section
    # array task 2 (depth 3) as sbatch would run it, without Slurm
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "2", "NO_COLOR": "1"}
    p = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    done = sorted(d.name for d in (out / "sweep-s").iterdir() if (d / files.SUMMARY).is_file())
    assert done == ["depth=3,seed=0", "depth=3,seed=1"]
    p = subprocess.run(["bash", "-c", script], env={**env, "SLURM_ARRAY_TASK_ID": "7"}, capture_output=True,
                       text=True)
    assert p.returncode == 2 and "no group for array task 7" in p.stderr


SBATCH = ["--list", "--format", "sbatch"]


@pytest.mark.parametrize("args, message", [
    (SBATCH + ["--time", "soon"], "--time: expected a Slurm time like 90, 1:30:00 or 2-00:00:00, got 'soon'"),
    (SBATCH + ["--mem", "lots"], "--mem: expected memory like 8G or 16000 (MB), got 'lots'"),
    (SBATCH + ["--sbatch", "not an option"], "--sbatch: expected an sbatch option as KEY=VALUE"),
    (["--list", "--partition", "gpu"], "--partition: only means something with --backend slurm or --list --format"),
    (["--executor", "local"], "--executor: only means something with --backend slurm"),
    (["--backend", "slurm", "--executor", "cloud"], "--executor: must be slurm or local, got 'cloud'"),
])
def test_bad_slurm_flags_are_refused_before_anything_is_written(tmp_path, args, message):
    base = write_config(tmp_path / "base.yaml")
    p = cli("sweep", base, "seed=0,1", *args, "--out", tmp_path / "runs", check=2)
    assert message in p.stderr and not (tmp_path / "runs").exists()


def test_a_bad_slurm_section_names_its_key(tmp_path):
    base = write_config(tmp_path / "base.yaml")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase: {base}\ngrid: {{seed: [0, 1]}}\nslurm: {{partiton: gpu}}\n")
    p = cli("sweep", sweep, "--list", check=2)
    assert p.stderr.strip() == (f'error: {sweep}: slurm.partiton: unknown key (did you mean "partition"?); the '
                                "slurm section has partition, time, cpus, gpus, mem, sbatch")


def test_array_tasks_complete_and_a_killed_task_resumes(tmp_path):
    """A real task process is killed (SIGKILL) after its points' first checkpoint; submitting the sweep again
    resumes them from it and completes; a third submission finds nothing to do."""
    from skipexp.experiments.sweep import backends, overrides, spec
    from skipexp.experiments.sweep.slurm_options import SlurmOptions

    base = write_config(tmp_path / "base.yaml", {"train.epochs": 40, "log.every": 8, "log.html": False})
    out = tmp_path / "runs"
    sw = overrides.resolve(base, ["seed=0,1"], "k")
    pts = spec.points(sw, out)
    got = {}
    first = threading.Thread(target=lambda: got.update(outcome=backends.run(
        sw, pts, out, 1, "slurm", options=SlurmOptions(), executor="local", name="k")))
    first.start()
    deadline = time.time() + 120
    while time.time() < deadline and not all(files.last_checkpoint(p.run_dir).is_file() for p in pts):
        time.sleep(0.02)
    pid = json.loads((pts[0].run_dir / files.META).read_text())["pid"]
    os.kill(pid, signal.SIGKILL)   # the group's training process: both points die mid-run
    first.join(timeout=120)
    assert {r.status for r in got["outcome"].ran} == {"crashed"}, got["outcome"].ran
    steps_before = json.loads((pts[0].run_dir / files.META).read_text()).get("steps_done")

    p = cli("sweep", base, "seed=0,1", "--name", "k", "--backend", "slurm", "--executor", "local", "--out", out,
            check=0)
    assert "completed seed=0" in p.stderr and "completed seed=1" in p.stderr and "2 points" in p.stdout
    for pt in pts:
        meta = json.loads((pt.run_dir / files.META).read_text())
        assert meta["status"] == "completed" and meta["steps_done"] == meta["total_steps"] == 320
        assert "resume" in (pt.run_dir / files.TRAIN_LOG).read_text()   # continued from its checkpoint
    assert steps_before is None or steps_before < 320
    assert (out / "sweep-k" / files.SUMMARY_CSV).is_file()
    submitted = sorted((out / "sweep-k" / "slurm").glob("*_submitted.pkl"))
    assert len(submitted) == 2   # one array task per run of the sweep: the group, then its resumption

    p = cli("sweep", base, "seed=0,1", "--name", "k", "--backend", "slurm", "--executor", "local", "--out", out,
            check=0)
    assert "2 point(s) already done, skipped" in p.stderr
    assert sorted((out / "sweep-k" / "slurm").glob("*_submitted.pkl")) == submitted
