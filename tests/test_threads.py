"""The thread count a run uses: a pure function of its config and the machine's cores."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import cli

from skipexp.core import config, machine
from skipexp.training.threads import MIN_FLOPS_PER_THREAD, available_cores, block_matmul_flops, choose_threads

REPO = Path(__file__).resolve().parent.parent


def cfg(**train_model: object) -> config.RunConfig:
    raw: dict = {"model": {}, "train": {}}
    for key, value in train_model.items():
        section, field = key.split("_", 1)
        raw[section][field] = value
    return config.from_dict(raw)


def test_small_widths_run_one_thread_however_many_cores():
    for width in (16, 32, 64, 128):
        assert choose_threads(cfg(model_width=width, train_batch_size=128), cores=64) == 1


def test_the_demo_config_runs_one_thread():
    demo = config.load(REPO / "configs" / "skip.yaml")
    assert choose_threads(demo, cores=2) == 1
    assert choose_threads(demo, cores=128) == 1


def test_large_work_uses_more_threads_capped_by_the_cores():
    big = cfg(model_width=1024, train_batch_size=256)
    assert block_matmul_flops(big) == 2 * 256 * 1024 * 1024
    assert choose_threads(big, cores=2) == 2
    assert choose_threads(big, cores=1) == 1
    assert choose_threads(big, cores=64) == min(64, 2 * 256 * 1024 * 1024 // MIN_FLOPS_PER_THREAD)
    mid = cfg(model_width=256, train_batch_size=128)   # 16.8 MFLOP a matmul
    assert choose_threads(mid, cores=64) == 2 * 128 * 256 * 256 // MIN_FLOPS_PER_THREAD < 64


def test_threads_never_fall_as_the_work_grows():
    counts = [choose_threads(cfg(model_width=w, train_batch_size=b), cores=16)
              for w in (16, 64, 256, 1024) for b in (64, 256)]
    per_width = [max(counts[i:i + 2]) for i in range(0, len(counts), 2)]
    assert per_width == sorted(per_width)


def test_depth_does_not_change_the_choice():
    # each layer pays its own fork/join: depth adds work and synchronisations alike
    assert {choose_threads(cfg(model_width=512, model_depth=d), cores=8) for d in (1, 4, 20, 64)} == \
        {choose_threads(cfg(model_width=512, model_depth=4), cores=8)}


def test_train_threads_overrides_the_choice():
    assert choose_threads(cfg(model_width=16, train_threads=3), cores=2) == 3
    assert choose_threads(cfg(model_width=1024, train_batch_size=256, train_threads=1), cores=64) == 1


def test_the_choice_is_deterministic_for_a_config_on_a_machine():
    c = cfg(model_width=384, train_batch_size=192)
    again = config.from_dict(yaml.safe_load(config.dump(c)))  # as a sweep point re-reads it
    assert len({choose_threads(c), choose_threads(c), choose_threads(again)}) == 1


def test_available_cores_is_this_process_affinity():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert available_cores() == expected >= 1


WAIT_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "SKIPEXP_OPENMP_WAIT")


@pytest.fixture
def no_wait_env(monkeypatch):
    """No wait set, as in a fresh shell; whatever the test sets is undone after it."""
    for key in WAIT_KEYS:
        monkeypatch.setenv(key, "x")   # recorded as absent or as it was, then removed
        monkeypatch.delenv(key)
    monkeypatch.setattr(machine, "available_cores", lambda: 2)
    monkeypatch.setattr(machine, "torch_loaded", lambda: False)   # as in a process before torch loads
    monkeypatch.setattr(machine, "torch_openmp_is_libgomp", lambda: True)


@pytest.mark.parametrize("elsewhere, chosen", [(0, ("GOMP_SPINCOUNT", str(machine.SHORT_SPIN))),
                                               (1, ("OMP_WAIT_POLICY", "PASSIVE")),
                                               (5, ("OMP_WAIT_POLICY", "PASSIVE"))])
def test_openmp_threads_spin_briefly_only_where_a_core_is_free(no_wait_env, monkeypatch, elsewhere, chosen):
    monkeypatch.setattr(machine, "running_elsewhere", lambda: elsewhere)
    machine.openmp_wait()
    key, value = chosen
    assert os.environ[key] == value
    other = ({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} - {key}).pop()
    assert other not in os.environ


@pytest.mark.parametrize("key, value", [("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "0")])
def test_a_users_openmp_wait_is_kept(no_wait_env, monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 0)
    machine.openmp_wait()
    assert os.environ[key] == value and "SKIPEXP_OPENMP_WAIT" not in os.environ
    assert len({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)) == 1


def test_a_child_process_chooses_its_wait_afresh(no_wait_env, monkeypatch):
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 0)
    machine.openmp_wait()                       # the parent saw an idle machine
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 3)
    machine.openmp_wait()                       # its child (same env) sees a busy one
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_a_wait_the_user_set_after_a_choice_is_kept(no_wait_env, monkeypatch):
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 0)
    machine.openmp_wait()
    os.environ["GOMP_SPINCOUNT"] = "500"        # the user's, over skipexp's choice
    machine.openmp_wait()
    assert os.environ["GOMP_SPINCOUNT"] == "500" and "OMP_WAIT_POLICY" not in os.environ


@pytest.mark.parametrize("elsewhere, libgomp", [(None, True), (0, False)])
def test_passive_where_the_load_or_the_runtime_is_unknown(no_wait_env, monkeypatch, elsewhere, libgomp):
    monkeypatch.setattr(machine, "running_elsewhere", lambda: elsewhere)
    monkeypatch.setattr(machine, "torch_openmp_is_libgomp", lambda: libgomp)
    machine.openmp_wait()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ


def test_tasks_that_share_cores_wait_passively_unless_the_user_chose(no_wait_env, monkeypatch):
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 0)
    machine.openmp_wait()
    shared = machine.sharing_env(dict(os.environ))
    assert shared["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in shared
    assert "SKIPEXP_OPENMP_WAIT" not in shared       # a child keeps it, as it would a user's
    assert machine.sharing_env({"GOMP_SPINCOUNT": "50"}) == {"GOMP_SPINCOUNT": "50"}


def test_nothing_is_chosen_once_torch_has_loaded(monkeypatch):
    for key in WAIT_KEYS:
        monkeypatch.setenv(key, "x")
        monkeypatch.delenv(key)
    before = dict(os.environ)
    machine.openmp_wait()                       # torch is loaded here: OpenMP has read its environment
    assert dict(os.environ) == before


@pytest.mark.parametrize("text, want", [("0.52 0.58 0.59 3/345 4242\n", 2), ("1.0 1.0 1.0 1/99 7\n", 0),
                                        ("garbage\n", None)])
def test_running_elsewhere_reads_the_run_queue_less_this_process(tmp_path, text, want):
    (tmp_path / "loadavg").write_text(text)
    assert machine.running_elsewhere(tmp_path / "loadavg") == want
    assert machine.running_elsewhere(tmp_path / "missing") is None


def test_the_torch_here_ships_gnu_openmp():
    assert machine.torch_openmp_is_libgomp() == sys.platform.startswith("linux")


def test_a_sweeps_parallel_jobs_get_the_passive_wait(no_wait_env, monkeypatch, tmp_path):
    """What the local backend hands its children: with --jobs 2 the passive wait, with --jobs 1 the env as is."""
    from skipexp.experiments.sweep import local

    seen = []

    class Recorder:
        def __init__(self, argv, env, **kw):
            seen.append(env)
            self.returncode = 0

        def poll(self):
            return 0

    monkeypatch.setattr(local.subprocess, "Popen", Recorder)
    monkeypatch.setattr(machine, "running_elsewhere", lambda: 0)
    machine.openmp_wait()
    group = type("G", (), {"argv": ["skipexp", "train"], "points": [], "label": "g"})()
    listener = type("L", (), {"on_start": lambda self, p: None, "on_end": lambda self, r: None})()
    for jobs in (2, 1):
        local.run_local([group], jobs, listener)
    assert seen[0]["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in seen[0]
    assert seen[1]["GOMP_SPINCOUNT"] == str(machine.SHORT_SPIN)   # the child pops the marker and chooses


def test_width_lists_and_hidden_count():
    listed = config.from_dict({"model": {"depth": 3, "width": [64, 2048, 64], "hidden": 32,
                                         "skip": {"kind": "projection"}}})
    # the median Linear of the blocks: 2 * batch * 64 * 32 (in -> hidden and hidden -> out alike)
    assert block_matmul_flops(listed) == 2 * 128 * 64 * 32


# --- a config gives the same numbers alone and as a sweep point ---------------------------------------

def _rows(run_dir: Path, name: str) -> list[dict]:
    with open(run_dir / name) as f:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(f)]


@pytest.mark.skipif(available_cores() < 2, reason="one core: every setting runs one thread")
def test_a_sweep_point_reproduces_the_same_config_trained_alone(tmp_path):
    # width 256 x batch 128 is big enough for the choice to be 2 threads here, and 1 and 2 threads round
    # differently: a sweep that gave each point cores // jobs threads (as it once did) fails this
    base = {"name": "p", "seed": 0, "data": {"dataset": "synthetic", "n_train": 2048, "n_test": 256},
            "model": {"depth": 6, "width": 256}, "train": {"steps": 40, "batch_size": 128, "lr": 0.05},
            "log": {"every": 5, "checkpoint": "none", "plots": False}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"name": "s", "base": "base.yaml",
                                                         "grid": {"seed": [0, 1]}}))
    alone = tmp_path / "alone"
    cli("train", "base.yaml", "--run-dir", alone, cwd=tmp_path, check=0)   # 2 threads here as in a process
    cli("sweep", "sweep.yaml", "--jobs", "2", "--out", "runs", cwd=tmp_path, check=0)   # points: processes
    point = next(p.parent for p in (tmp_path / "runs").rglob("config.yaml")
                 if yaml.safe_load(p.read_text())["seed"] == 0)
    assert [yaml.safe_load((d / "meta.json").read_text())["threads"] for d in (alone, point)] == [2, 2]
    assert _rows(point, "metrics.csv") == _rows(alone, "metrics.csv")
    assert _rows(point, "eval.csv") == _rows(alone, "eval.csv")
    assert _rows(point, "grad_norms.csv") == _rows(alone, "grad_norms.csv")
