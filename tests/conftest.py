"""Shared test helpers: the CLI in this process or as the installed ``skipexp`` command, tiny configs."""
from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import signal
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from skipexp.rundir import files, runio

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
    """``skipexp ARGS`` as its own process, the installed console script (see ``cli`` for the in-process one)."""
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    p = subprocess.run(skipexp_cmd() + [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True,
                       text=True, timeout=timeout)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


@dataclass
class Result:
    """What a ``skipexp`` command did, with the field names of ``subprocess.CompletedProcess``."""
    returncode: int
    stdout: str
    stderr: str


def _reset_consoles() -> int:
    """Forget the CLI's rich consoles, so that the next one is made for this call's streams and env;
    how many there are.

    A console reads NO_COLOR, COLUMNS and whether its stream is a terminal once, when it is made.
    """
    found = 0
    for name, module in list(sys.modules.items()):
        if name == "skipexp.cli" or name.startswith("skipexp.cli."):
            for value in list(vars(module).values()):
                if type(value).__name__ == "LazyConsole":
                    value._console = None
                    found += 1
    return found


@contextlib.contextmanager
def _warnings_as_a_process_shows_them():
    """Python's default warning filters, printed to (the redirected) stderr: pytest would otherwise collect
    the warnings itself, and a stray warning line that the real command prints would go unseen."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = warnings._showwarning_orig
        yield


def cli(*args: object, cwd: Path | None = None, env: dict | None = None, check: int | None = None) -> Result:
    """``skipexp ARGS`` run in this process through ``skipexp.cli.main``: the exit code, stdout and stderr.

    The same environment as ``run_cli`` (NO_COLOR, 200 columns). What the command changes for the whole
    process (signal handlers, torch threads, the working folder, env) is put back afterwards. Use
    ``run_cli`` where only a real process shows the behaviour: signals, locks between processes, the
    console script's own exit status.
    """
    from skipexp import cli as cli_mod

    env = {"NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    saved_env = {k: os.environ.get(k) for k in env}
    saved_signals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    saved_argv, saved_cwd, saved_threads = sys.argv, os.getcwd(), torch.get_num_threads()
    main_module = sys.modules["__main__"]
    saved_package = getattr(main_module, "__package__", None)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.update(env)
        # click names the program (in usage errors, and the completion variable) after argv[0], or
        # "python -m pytest" when __main__ has a package: as the console script, it is "skipexp"
        sys.argv = ["skipexp"]
        main_module.__package__ = None
        if cwd is not None:
            os.chdir(cwd)
        _reset_consoles()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _warnings_as_a_process_shows_them():
            try:
                cli_mod.main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        _reset_consoles()
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        main_module.__package__ = saved_package
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for s, handler in saved_signals.items():
            signal.signal(s, handler)
        torch.set_num_threads(saved_threads)
    result = Result(code, out.getvalue(), err.getvalue())
    if check is not None:
        assert code == check, f"exit {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


TINY = {
    "name": "tiny",
    "seed": 0,
    "device": "cpu",
    "data": {"dataset": "synthetic", "n_train": 512, "n_test": 256, "input_dim": 16},
    "model": {"depth": 4, "width": 16, "skip": {"kind": "identity"}},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "threads": 1},
    "log": {"every": 2, "plots": False},  # tests that look at plots turn them on
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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Result, Path]:
    """TINY trained once by ``skipexp train`` (plots and all), for tests that only read a finished run folder:
    the command's result and the run folder. Tests must not change the folder."""
    tmp = tmp_path_factory.mktemp("tiny-run")
    out = tmp / "runs"
    result = cli("train", write_config(tmp / "tiny.yaml", {"log.plots": True}), "--out", out, check=0)
    runs = [d for d in out.iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return result, runs[0]


# --- the scheduling oracle: a run's numbers do not depend on what trained beside it, or when it stopped ---

RUN_CSVS = ("metrics.csv", "eval.csv", "grad_norms.csv", "act_grad_norms.csv", "act_norms.csv")
TIMING = {"elapsed_s", "wall_s", "steps_per_s", "name"}   # how long it took, and what the folder is called


def assert_same_numbers(a: Path, b: Path, checkpoint: bool = True) -> None:
    """Run folders ``a`` and ``b`` hold the same numbers to the bit: every cell of every CSV but elapsed_s,
    summary.json but its timing, status and steps in meta.json, and (``checkpoint``) the last checkpoint's
    weights, optimizer state and schedule."""
    from skipexp.rundir import files, runio

    for name in RUN_CSVS:
        assert runio.csv_columns(a / name) == runio.csv_columns(b / name), name
        ra, rb = runio.read_csv(a / name), runio.read_csv(b / name)
        assert len(ra) == len(rb) > 0 or name == "eval.csv", f"{name}: {len(ra)} rows vs {len(rb)}"
        for x, y in zip(ra, rb):
            diff = {c: (x[c], y[c]) for c in x if c not in TIMING and not _same_float(x[c], y[c])}
            assert not diff, f"{a.name} vs {b.name}, {name} step {x['step']}: {diff}"
    sa, sb = (files.read_json(d / "summary.json") for d in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMING} == {k: v for k, v in sb.items() if k not in TIMING}
    ma, mb = files.read_json(a / "meta.json"), files.read_json(b / "meta.json")
    for key in ("status", "diverged_at_step", "seed", "params", "total_steps", "steps_done"):
        assert ma.get(key) == mb.get(key), key
    last = [d / "checkpoints" / "last.pt" for d in (a, b)]
    assert last[0].exists() == last[1].exists(), "a checkpoint in one folder only"
    if checkpoint and last[0].exists():
        ca, cb = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (a, b))
        assert ca["step"] == cb["step"] and ca["scheduler"] == cb["scheduler"]
        assert ca["optimizer"]["param_groups"] == cb["optimizer"]["param_groups"]
        for key in ("model",):
            assert ca[key].keys() == cb[key].keys()
            assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key]), key
        sa_, sb_ = ca["optimizer"]["state"], cb["optimizer"]["state"]
        assert sa_.keys() == sb_.keys()
        for i in sa_:
            assert sa_[i].keys() == sb_[i].keys()
            assert all(torch.equal(sa_[i][k], sb_[i][k]) for k in sa_[i]), (i, list(sa_[i]))


def assert_identical(a: Path, b: Path) -> None:
    """Every logged number and the checkpoint's weights equal, to the bit."""
    for name in RUN_CSVS:
        ra, rb = runio.read_csv(a / name), runio.read_csv(b / name)
        assert len(ra) == len(rb), name
        for x, y in zip(ra, rb):
            for col in x:   # the same to the bit, NaN for NaN
                assert col == "elapsed_s" or x[col] == y[col] or (x[col] != x[col] and y[col] != y[col]), \
                    (name, x["step"], col, x[col], y[col])
    ma, mb = files.read_json(a / "meta.json"), files.read_json(b / "meta.json")
    assert (ma["status"], ma.get("diverged_at_step")) == (mb["status"], mb.get("diverged_at_step"))
    ca, cb = a / "checkpoints" / "last.pt", b / "checkpoints" / "last.pt"
    assert ca.exists() == cb.exists()
    if ca.exists():
        wa, wb = (torch.load(c, weights_only=True)["model"] for c in (ca, cb))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def assert_close_numbers(a: Path, b: Path, rel: float = 2e-4, abs_: float = 1e-6) -> None:
    """``a`` and ``b`` hold the same numbers within float rounding: runs on different devices (a CUDA run
    against a CPU run), where the kernels themselves differ."""
    import math

    from skipexp.rundir import files, runio

    for name in RUN_CSVS:
        ra, rb = runio.read_csv(a / name), runio.read_csv(b / name)
        assert len(ra) == len(rb), f"{name}: {len(ra)} rows vs {len(rb)}"
        for x, y in zip(ra, rb):
            for c in x:
                if c not in TIMING and not _same_float(x[c], y[c]):
                    assert math.isclose(x[c], y[c], rel_tol=rel, abs_tol=abs_), (name, x["step"], c, x[c], y[c])
    ma, mb = files.read_json(a / "meta.json"), files.read_json(b / "meta.json")
    for key in ("status", "diverged_at_step", "seed", "params", "total_steps", "steps_done"):
        assert ma.get(key) == mb.get(key), key


def _same_float(x: float, y: float) -> bool:
    return x == y or (x != x and y != y)   # NaN rows (a diverged step) are the same row


def model_of(cfg):
    """A CPU model of ``cfg`` (its first seed's shape), as training builds it."""
    from skipexp.core.data import input_shape
    from skipexp.core.models import SkipNet

    return SkipNet(cfg.model, *input_shape(cfg.data))


def train_one(cfg, run_dir: Path, **kw):
    """Train one config into its folder (from fit.create_run) as a command does, without its plots: its result."""
    from skipexp.training import fit
    from skipexp.views.run_views import RunViews

    return fit.fit([cfg], [run_dir], **{"views": RunViews(plots=False), **kw})[0]


def train_together(cfgs: list, run_dirs: list[Path], **kw) -> list:
    """Train one-seed configs of one group into their folders together, as a command does, without plots."""
    from skipexp.training import fit
    from skipexp.views.run_views import RunViews

    return fit.fit(cfgs, run_dirs, **{"views": RunViews(plots=False), **kw})


def lone_run(raw: dict, seed: int, out: Path) -> Path:
    """``raw`` (a config dict) trained alone with ``seed``, in this process; its folder."""
    from skipexp.core import config
    from skipexp.training import fit

    raw = copy.deepcopy(raw)
    raw["seed"] = seed
    cfg = config.from_dict(raw)
    run_dir = fit.create_run(cfg, out)
    train_one(cfg, run_dir)
    return run_dir


def together(raw: dict, seeds: list[int], out: Path) -> list:
    from skipexp.core import config
    from skipexp.training import fit

    cfg = config.from_dict({**raw, "seed": seeds})
    cfgs = [cfg.replace(seed=s, name=f"{cfg.name}-seed{s}") for s in seeds]
    dirs = [fit.create_run(c, out) for c in cfgs]
    return train_together(cfgs, dirs)


def train_in_process(tmp_path, name: str, overrides: dict | None = None, code: int = 0):
    """``skipexp train`` in this process (it installs its own Ctrl-C handlers: put pytest's back)."""
    from skipexp.cli import main as cli_main

    cfg = write_config(tmp_path / f"{name}.yaml", {"name": name, **(overrides or {})})
    run = tmp_path / name
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(SystemExit) as e:
            cli_main(["train", str(cfg), "--run-dir", str(run)])
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert e.value.code == code
    return run


# Modules whose tests start processes (a sweep's groups, Ray, Slurm's stand-in, kills) or train the longest,
# slowest first: collected first, they start first on the two workers, and the quick tests fill in around
# them instead of the slow ones trailing at the end. Each module stays in one piece (its module fixtures
# build once).
SLOW_FIRST = ("test_ray_backend", "test_sweep_kills", "test_same_numbers", "test_sweep", "test_compare",
              "test_sweep_variants", "test_api", "test_slurm_backend", "test_reliability", "test_threads",
              "test_multirun", "test_sweep_seeds", "test_mechanisms_cli", "test_science", "test_console")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))
