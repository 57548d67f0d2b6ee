"""The run folder's one writer (skipexp.rundir.files): atomic replacement, with the mode the umask gives."""
import os
import stat
from pathlib import Path

import pytest
from conftest import write_config

from skipexp.core.errors import SkipexpError
from skipexp.rundir import files
from skipexp.rundir.folder import RunFolder


@pytest.fixture
def umask():
    """Set a umask for one test and restore the old one."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_get_the_mode_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    assert files.file_mode() == expected
    files.write_json(tmp_path / "a.json", {"x": 1})
    files.atomic_write(tmp_path / "b.txt", "text")
    files.write_csv(tmp_path / "c.csv", ["a"], [{"a": 1}])
    with open(tmp_path / "d.txt", "w"):  # the oracle: what a plain open() makes under this umask
        pass
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == dict.fromkeys(["a.json", "b.txt", "c.csv", "d.txt"],
                                                                            expected)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "meta.json"
    files.write_json(target, {"status": "running"})
    with pytest.raises(TypeError):
        files.write_json(target, {"status": "completed", "bad": object()})  # not JSON
    assert files.read_json(target) == {"status": "running"}
    with pytest.raises(RuntimeError), files.atomic_path(tmp_path / "x.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path  # writers that pick a format by suffix
        tmp.write_bytes(b"half")
        raise RuntimeError("killed while drawing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_non_finite_numbers_are_written_as_valid_json(tmp_path):
    files.write_json(tmp_path / "s.json", {"a": float("inf"), "b": [float("-inf"), float("nan")]})
    assert files.read_json(tmp_path / "s.json") == {"a": "inf", "b": ["-inf", None]}
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SkipexpError, match="unreadable JSON"):
        files.read_json(tmp_path / "bad.json")


def test_mark_interrupted_and_failed_keep_a_finished_run(tmp_path):
    files.write_json(tmp_path / "meta.json", {"tool": "skipexp", "status": "running"})
    assert RunFolder(tmp_path).mark_interrupted() and files.read_meta(tmp_path)["status"] == "interrupted"
    RunFolder(tmp_path).mark_failed("worker died\nsecond line")
    assert files.read_meta(tmp_path) == {"tool": "skipexp", "status": "failed", "failure": "worker died"}
    files.write_json(tmp_path / "meta.json", {"status": "completed"})
    assert not RunFolder(tmp_path).mark_interrupted()
    RunFolder(tmp_path).mark_failed("late")
    assert files.read_meta(tmp_path) == {"status": "completed"}


@pytest.fixture
def signal_handlers():
    """The CLI installs its Ctrl-C handlers; an in-process run must leave pytest's own in place."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_trained_run_folder_is_readable_by_group_and_others(tmp_path, umask, signal_handlers):
    """meta.json and summary.json used to be 0600 (mkstemp's mode) beside 0644 CSVs and plots."""
    from skipexp.cli import main

    umask(0o022)
    cfg = write_config(tmp_path / "tiny.yaml", {"train.epochs": 1, "data.n_train": 64, "data.n_test": 64})
    with pytest.raises(SystemExit) as e:
        main(["train", str(cfg), "--out", str(tmp_path / "runs"), "--run-dir", str(tmp_path / "runs" / "r")])
    assert e.value.code == 0
    run = tmp_path / "runs" / "r"
    written = [run / files.META, run / files.SUMMARY, run / files.CONFIG, run / files.METRICS, run / files.EVAL,
               *sorted((run / files.PLOTS).glob("*.png"))]
    assert all(p.is_file() for p in written), [p.name for p in written if not p.is_file()]
    modes = {p.name: oct(mode(p)) for p in written}
    assert all(mode(p) & 0o044 == 0o044 for p in written), modes


def test_a_csv_log_rolls_back_to_a_checkpoint_and_appends_after_it(tmp_path):
    """What resume does to every CSV: the rows past the checkpoint's step go (a killed process wrote them),
    and so does anything after a row out of order (two runs spliced by an older version)."""
    from skipexp.rundir import runio

    path = tmp_path / "m.csv"
    path.write_text("step,x\n1,0.5\n2,0.25\n4,0.125\n6,0.0625\n8,0.03")   # the last line half-written
    log = runio.CsvLog(path, ["step", "x"])
    assert log.roll_back(4) == 1 and path.read_text() == "step,x\n1,0.5\n2,0.25\n4,0.125\n"
    log.write([6, 1.5])
    log.write([4, 9.0])   # at or below the last step on disk: never written twice
    log.close()
    assert path.read_text() == "step,x\n1,0.5\n2,0.25\n4,0.125\n6,1.5\n"

    path.write_text("step,x\n1,0.5\n2,0.25\n4,0.125\n3,7.0\n4,7.0\n6,7.0\n")
    log = runio.CsvLog(path, ["step", "x"])
    assert log.roll_back(6) == 3 and path.read_text() == "step,x\n1,0.5\n2,0.25\n4,0.125\n"
    assert log.last_step == 4
    assert log.roll_back(0) == 3 and path.read_text() == "step,x\n"   # resumed from the start
    log.close()
