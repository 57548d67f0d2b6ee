"""Shared test helpers: the installed ``skipexp`` command, tiny configs, run-folder readers."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent

# In-process tests use one thread: on a shared CI box, torch's default (every core) oversubscribes badly.
torch.set_num_threads(1)


def skipexp_cmd() -> list[str]:
    """The installed console script next to this interpreter (a venv's), else the one on PATH."""
    here = Path(sys.executable).parent / "skipexp"
    if here.exists():
        return [str(here)]
    found = shutil.which("skipexp")
    assert found, "the skipexp command is not installed (pip install -e .)"
    return [found]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300,
            check: int | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    p = subprocess.run(skipexp_cmd() + [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True,
                       text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "synthetic", "n_train": 512, "n_test": 256, "input_dim": 16},
    "model": {"depth": 4, "width": 16, "skip": {"kind": "identity"}},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "threads": 1},
    "log": {"every": 2},
}


def write_config(path: Path, overrides: dict | None = None, base: dict | None = None) -> Path:
    import copy

    cfg = copy.deepcopy(base or TINY)
    for dotted, value in (overrides or {}).items():
        node = cfg
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "tiny.yaml")
