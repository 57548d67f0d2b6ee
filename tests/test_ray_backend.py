"""The Ray backend on a real local Ray instance (loopback): each point equals its config trained alone,
a killed task or a dead worker is retried once and then failed, and a missing Ray is exit 2 with the hint.

Ray starts once for the module (about 6 s); the tests that need it are skipped when Ray is not installed.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import assert_same_numbers, run_cli, train_one, write_config

from skipexp.core import config
from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import ray_backend
from skipexp.rundir import runio
from skipexp.training import fit as train_mod

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'skipexp[ray]')")
pytestmark = pytest.mark.xdist_group("ray")   # one worker starts Ray once


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # two CPUs, like the machines the test suite runs on; run_ray joins this instance and leaves it up
    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_four_points_on_ray_equal_each_point_trained_alone(tmp_path, local_ray):
    base = write_config(tmp_path / "base.yaml", {"train.epochs": 1})
    (tmp_path / "ray.yaml").write_text(textwrap.dedent("""\
        name: ray
        base: base.yaml
        grid:
          model.depth: [2, 6]
          seed: [0, 1]
        """))
    run_cli("sweep", "ray.yaml", "--backend", "ray", cwd=tmp_path, check=0, timeout=240)  # joins local_ray
    ray_dirs = sorted(p for p in (tmp_path / "runs" / "sweep-ray").iterdir() if runio.is_run_dir(p))
    assert len(ray_dirs) == 4 and (tmp_path / "runs" / "sweep-ray" / "summary.csv").is_file()
    pids = {}
    for d in ray_dirs:   # the oracle: the point's config trained alone, uninterrupted, in this process
        depth, seed = (part.split("=")[1] for part in d.name.split(","))
        cfg = config.load(base, [f"model.depth={depth}", f"seed={seed}"])
        assert train_one(cfg, alone := train_mod.create_run(cfg, tmp_path / "alone")).status == "completed"
        assert_same_numbers(d, alone)
        meta = json.loads((d / "meta.json").read_text())
        assert meta["status"] == "completed" and meta["vectorized"] is True
        pids.setdefault(d.name.split(",")[0], set()).add(meta["pid"])
    assert [len(v) for v in pids.values()] == [1, 1]  # a task per depth, its seeds in one process


def dying_point(tmp_path: Path, name: str, how: str) -> dict:
    """A point whose command counts its attempts, starts a run folder, then dies: ``self`` kills itself
    with SIGKILL; ``worker`` kills the Ray worker that runs it (a system failure)."""
    run_dir = tmp_path / name
    script = textwrap.dedent(f"""\
        import json, os, pathlib, signal, time
        run = pathlib.Path({str(run_dir)!r})
        with open({str(tmp_path / (name + '.attempts'))!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        run.mkdir(exist_ok=True)  # a retry finds what the first attempt left
        (run / "config.yaml").write_text("name: x\\n")
        (run / "meta.json").write_text(json.dumps({{"tool": "skipexp", "status": "running"}}))
        os.kill(os.getpid() if {how!r} == "self" else os.getppid(), signal.SIGKILL)
        time.sleep(30)  # the worker's death takes this process with it
        """)
    return {"argv": [sys.executable, "-c", script], "run_dir": run_dir}


@needs_ray
def test_killed_point_and_dead_worker_are_retried_once_then_failed(tmp_path, local_ray):
    done = tmp_path / "fine"
    finished = (f"import json, pathlib; d = pathlib.Path({str(done)!r}); d.mkdir(); "
                f"(d / 'meta.json').write_text(json.dumps({{'tool': 'skipexp', 'status': 'completed'}}))")
    points = [dying_point(tmp_path, "killed", "self"), dying_point(tmp_path, "worker", "worker"),
              {"argv": [sys.executable, "-c", finished], "run_dir": done}]
    assert ray_backend.run_ray(points, num_cpus=1) == [["failed"], ["failed"], ["completed"]]
    for name in ("killed", "worker"):
        assert len((tmp_path / f"{name}.attempts").read_text().split()) == 2, name  # first try + one retry
        meta = json.loads((tmp_path / name / "meta.json").read_text())
        assert meta["status"] == "failed" and meta["failure"], meta


@needs_ray
def test_a_finished_task_is_not_run_again_and_each_folder_reports_its_status(tmp_path, local_ray):
    done, other, stale = tmp_path / "done", tmp_path / "other", tmp_path / "stale"
    for d, status in ((done, "completed"), (other, "diverged"), (stale, "running")):
        d.mkdir()
        (d / "meta.json").write_text(json.dumps({"tool": "skipexp", "status": status}))
    marker = tmp_path / "ran"
    touch = [sys.executable, "-c", f"import pathlib; pathlib.Path({str(marker)!r}).touch()"]
    # a group whose folders are all finished runs nothing
    assert ray_backend.run_ray([{"argv": touch, "run_dirs": [done, other]}]) == [["completed", "diverged"]]
    assert not marker.exists()
    # with one unfinished folder the command runs (it settles the folders itself); a folder it leaves
    # unfinished is a failed point
    statuses = ray_backend.run_ray([{"argv": touch, "run_dirs": [done, stale]}])
    assert statuses == [["completed", "failed"]]
    assert marker.exists() and stale.exists()


@needs_ray
def test_jobs_caps_the_points_in_flight(tmp_path, local_ray):
    log = tmp_path / "log"
    script = (f"import time\nwith open({str(log)!r}, 'a') as f: f.write('start\\n')\ntime.sleep(0.5)\n"
              f"with open({str(log)!r}, 'a') as f: f.write('end\\n')\n")
    points = [{"argv": [sys.executable, "-c", script], "run_dir": tmp_path / f"p{i}"} for i in range(3)]
    order = []
    assert ray_backend.run_ray(points, jobs=1, on_done=lambda p, s: order.append(p["run_dir"])) == [["failed"]] * 3
    assert log.read_text().split() == ["start", "end"] * 3  # never two at once, on two CPUs
    assert order == [p["run_dir"] for p in points]


def test_gpus_per_point():
    assert ray_backend.gpus_per_point("cuda") == ray_backend.gpus_per_point("cuda:1") == 1.0
    assert ray_backend.gpus_per_point("cpu", cluster_gpus=4) == 0.0
    assert ray_backend.gpus_per_point("auto") == 0.0 and ray_backend.gpus_per_point("auto", 2) == 1.0


def test_without_ray_the_backend_is_bad_input_with_the_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    with pytest.raises(SkipexpError) as e:
        ray_backend.run_ray([])
    assert "pip install 'skipexp[ray]'" in str(e.value) and e.value.key == "--backend"
    # and through the real command: exit 2, one line
    write_config(tmp_path / "base.yaml")
    (tmp_path / "s.yaml").write_text("name: s\nbase: base.yaml\ngrid:\n  seed: [0, 1]\n")
    code = ("import sys; sys.modules['ray'] = None\nfrom skipexp.cli import main\n"
            "main(['sweep', 's.yaml', '--backend', 'ray'])")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 2 and "pip install 'skipexp[ray]'" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
