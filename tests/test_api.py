"""The Python API: rows of load/curves agree with the files on disk, train is the command's code path."""
import csv
import inspect
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli

import skipexp
from skipexp import api
from skipexp.core.errors import SkipexpError
from skipexp.experiments import compare as compare_mod

TINY = {"data": {"dataset": "synthetic", "n_train": 256, "n_test": 128, "input_dim": 8},
        "model": {"depth": 2, "width": 8}, "train": {"steps": 6, "batch_size": 32, "threads": 1},
        "log": {"every": 2}, "device": "cpu"}


def _yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _compare(root: Path, configs: list[Path], overrides: list[str]) -> Path:
    """A comparison folder, made by the functions the ``compare`` command calls."""
    members = compare_mod.plan(configs, overrides)
    cdir = compare_mod.create_dir(root)
    compare_mod.write_plan(cdir, members, overrides)
    compare_mod.run(members, cdir)
    compare_mod.rebuild(cdir)
    return cdir


pytestmark = pytest.mark.xdist_group("api")   # one worker trains the module fixture once


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    quiet = {**TINY, "log": {**TINY["log"], "plots": False}}  # what load reads is the CSVs and JSON
    plain = _yaml(root / "plain.yaml", {**quiet, "model": {"depth": 2, "width": 8, "skip": {"kind": "none"}}})
    skip = _yaml(root / "skip.yaml", quiet)
    sweep_file = _yaml(root / "grid.yaml", {"name": "tiny", "base": "skip.yaml", "grid": {"model.depth": [1, 2]}})
    cli("sweep", sweep_file, "--out", root / "runs", check=0)
    return {
        "run": api.train(quiet, out=root / "runs", name="solo")[0].run_dir,
        "seeds": api.train(quiet, ["seed=[0,1]"], out=root / "runs", name="pair"),
        "compare": _compare(root / "runs", [plain, skip], []),
        "compare_seeds": _compare(root / "runs", [plain, skip], ["seed=[0,1]"]),
        "sweep": root / "runs" / "sweep-tiny",
        "root": root,
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _expected_row(run_dir: Path) -> dict:
    """What a load row must say about a run, read here with json and yaml alone."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = _flatten(yaml.safe_load((run_dir / "config.yaml").read_text()))
    meta = json.loads((run_dir / "meta.json").read_text())
    row = {"run": meta["name"], "seed": meta["seed"], "path": str(run_dir)}
    row.update({k: v for k, v in summary.items() if k != "name"})
    row.update({k: v for k, v in config.items() if k not in ("name", "seed")})
    return row


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _no_pandas(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError


# --- load ----------------------------------------------------------------------------------------

def test_load_run_agrees_with_its_files(folders, monkeypatch):
    pd = pytest.importorskip("pandas")
    run_dir = folders["run"]
    expected = _expected_row(run_dir)
    df = api.load(run_dir)
    assert isinstance(df, pd.DataFrame) and len(df) == 1
    assert list(df.columns) == list(expected)
    assert all(_same(df.iloc[0][k], v) or (v is None and pd.isna(df.iloc[0][k])) for k, v in expected.items())
    assert df.iloc[0]["run"] == "solo" and df.iloc[0]["status"] == "completed" and df.iloc[0]["steps"] == 6

    _no_pandas(monkeypatch)
    assert api.load(run_dir) == [expected]                      # records when pandas is missing
    assert api.load(str(run_dir), as_frame=False) == [expected]
    with pytest.raises(SkipexpError, match="needs pandas"):
        api.load(run_dir, as_frame=True)


def test_load_takes_train_results_and_lists(folders):
    seeds = folders["seeds"]
    rows = api.load(seeds, as_frame=False)
    assert rows == [_expected_row(r.run_dir) for r in seeds]
    assert [(r["run"], r["seed"]) for r in rows] == [("pair-seed0", 0), ("pair-seed1", 1)]
    both = api.load([folders["run"], seeds[1]], as_frame=False)
    assert both == [_expected_row(folders["run"]), _expected_row(seeds[1].run_dir)]


@pytest.mark.parametrize("which", ["compare", "compare_seeds"])
def test_load_comparison_has_one_row_per_member_run(folders, which, monkeypatch):
    cdir = folders[which]
    plan = json.loads((cdir / "summary.json").read_text())
    expected = [{"member": m["name"], **_expected_row(cdir / rel)}
                for m in plan["members"] for rel in compare_mod.member_runs(m)]
    _no_pandas(monkeypatch)
    rows = api.load(cdir)
    assert rows == expected
    assert {r["member"] for r in rows} == {"plain", "skip"}
    assert {r["model.skip.kind"] for r in rows} == {"none", "identity"}
    assert len(rows) == (4 if which == "compare_seeds" else 2)
    # the member's mean in the comparison's summary.json is the mean of its rows
    for m in plan["members"]:
        mine = [r["final_test_acc"] for r in rows if r["member"] == m["name"]]
        assert m["summary"]["final_test_acc"] == pytest.approx(sum(mine) / len(mine))


def test_load_sweep_agrees_with_summary_csv(folders):
    pd = pytest.importorskip("pandas")
    root = folders["sweep"]
    with open(root / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    df = api.load(root)
    assert list(df["point"]) == [r["point"] for r in table] == ["depth=1", "depth=2"]
    assert list(df["model.depth"]) == [1, 2]
    assert list(df.columns[:5]) == ["point", "model.depth", "run", "seed", "path"]
    for (_, row), line in zip(df.iterrows(), table):
        assert row["status"] == line["status"] == "completed"
        for k in ("steps", "final_train_loss", "final_test_acc", "grad_ratio_first_last_end"):
            assert row[k] == pytest.approx(float(line[k])), k
        expected = _expected_row(root / line["point"])
        assert all(_same(row[k], v) or (v is None and pd.isna(row[k])) for k, v in expected.items())


def test_load_sweep_lists_points_that_never_ran(folders, tmp_path):
    copy = tmp_path / "sweep-tiny"
    subprocess.run(["cp", "-r", str(folders["sweep"]), str(copy)], check=True)
    subprocess.run(["rm", "-r", str(copy / "depth=2")], check=True)
    rows = api.load(copy, as_frame=False)
    assert [r["status"] for r in rows] == ["completed", "missing"]
    assert rows[1] == {"point": "depth=2", "model.depth": 2, "run": "depth=2", "path": str(copy / "depth=2"),
                       "status": "missing"}


def test_load_summarizes_a_run_without_a_current_summary(folders, tmp_path):
    from skipexp.rundir.summary import summarize

    crashed = tmp_path / "crashed"
    subprocess.run(["cp", "-r", str(folders["run"]), str(crashed)], check=True)
    (crashed / "summary.json").unlink()
    meta = json.loads((crashed / "meta.json").read_text())
    meta.update(status="running", heartbeat={"host": "elsewhere", "pid": 1, "time": 0})
    (crashed / "meta.json").write_text(json.dumps(meta))
    (row,) = api.load(crashed, as_frame=False)
    assert row["status"] == "crashed" and row["final_test_acc"] == summarize(crashed)["final_test_acc"]
    assert not (crashed / "summary.json").exists()  # load writes nothing


# --- curves --------------------------------------------------------------------------------------

def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("name", list(api.CURVES))
def test_curves_are_the_csv_rows_of_every_run(folders, name, monkeypatch):
    cdir = folders["compare_seeds"]
    runs = sorted((cdir / "runs").iterdir())
    _no_pandas(monkeypatch)
    rows = api.curves(cdir, name)
    expected = []
    plan = json.loads((cdir / "summary.json").read_text())
    for m in plan["members"]:
        for rel in compare_mod.member_runs(m):
            for line in _csv(cdir / rel / api.CURVES[name][0]):
                expected.append((m["name"], str(cdir / rel), {k: float(v) for k, v in line.items()}))
    assert len(rows) == len(expected) > 0 and len(runs) == 4
    for row, (member, path, line) in zip(rows, expected):
        assert row["member"] == member and row["path"] == path
        assert {k: row[k] for k in line} == line
        assert isinstance(row["step"], int)


def test_curves_frame_of_a_sweep(folders):
    pytest.importorskip("pandas")
    df = api.curves(folders["sweep"], "grad_norms")
    per_point = df.groupby("point").size().to_dict()
    assert per_point == {p: len(_csv(folders["sweep"] / p / "grad_norms.csv")) for p in ("depth=1", "depth=2")}
    # depth 1 has no block 1: its cells are empty, not dropped
    assert df[df["model.depth"] == 1]["blocks.1.fc1"].isna().all()
    assert df[df["model.depth"] == 2]["blocks.1.fc1"].notna().all()


def test_curves_unknown_file_lists_the_valid_ones(folders):
    with pytest.raises(SkipexpError) as e:
        api.curves(folders["run"], "metric")
    assert all(name in str(e.value) for name in api.CURVES)


# --- train ---------------------------------------------------------------------------------------

def _losses(run_dir: Path) -> list[str]:
    return [r["train_loss"] for r in _csv(run_dir / "metrics.csv")]


def test_train_is_the_commands_code_path(folders, tmp_path):
    """A dict, its YAML file with overrides, and `skipexp train` on that file give the same run."""
    cfg = _yaml(tmp_path / "tiny.yaml", {**TINY, "model": {"depth": 3, "width": 8}})
    from_file = api.train(cfg, {"train.lr": 0.1}, out=tmp_path / "a")
    from_dict = api.train({**TINY, "train": {**TINY["train"], "lr": 0.1}}, ["model.depth=3"], name="tiny",
                          out=tmp_path / "b")
    cli("train", cfg, "train.lr=0.1", "--run-dir", tmp_path / "cli", check=0)
    (a,), (b,) = from_file, from_dict
    assert a.status == b.status == "completed"
    assert a.summary == json.loads((a.run_dir / "summary.json").read_text())
    assert (a.run_dir / "config.yaml").read_text() == (b.run_dir / "config.yaml").read_text() \
        == (tmp_path / "cli" / "config.yaml").read_text()
    assert _losses(a.run_dir) == _losses(b.run_dir) == _losses(tmp_path / "cli")
    assert a.run_dir.parent == tmp_path / "a" and a.run_dir.name.endswith("-tiny")


def test_train_seeds_and_run_dir(tmp_path):
    results = api.train(TINY, "seed=[3,4]", run_dir=tmp_path / "exact", plots=False)
    assert [r.run_dir for r in results] == [tmp_path / "exact-seed3", tmp_path / "exact-seed4"]
    assert [json.loads((r.run_dir / "meta.json").read_text())["seed"] for r in results] == [3, 4]
    assert not (results[0].run_dir / "plots" / "loss.png").exists()


@pytest.mark.parametrize("config, overrides, message", [
    ({**TINY, "model": {"depth": 0}}, (), "model.depth: must be > 0, got 0"),
    ({**TINY, "modle": {}}, (), 'did you mean "model"'),
    (TINY, ["model.depth"], "expected KEY=VALUE"),
    (TINY, [3], "KEY=VALUE strings"),
    (TINY, {"model.skip.kind": "skipp"}, "model.skip.kind"),
    (42, (), "expected a config file, a dict or a RunConfig"),
    ("no/such.yaml", (), "no/such.yaml: no such file"),
])
def test_train_refuses_bad_configs_before_writing(tmp_path, config, overrides, message):
    with pytest.raises(SkipexpError, match=re.escape(message)):
        api.train(config, overrides, out=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, options, message", [
    ((TINY, 5), {}, "overrides: must be KEY=VALUE strings (a list, or one string) or a dict of dotted keys, got 5"),
    ((TINY,), {"out": 123}, "out: must be a folder (a str or a path), got 123"),
    ((TINY,), {"run_dir": 1.5}, "run_dir: must be a folder (a str or a path) or None, got 1.5"),
    ((TINY,), {"threads": "2"}, "threads: must be an int or None, got '2'"),
    ((TINY,), {"name": 7}, "name: must be a str or None, got 7"),
    ((TINY,), {"plots": "no"}, "plots: must be True or False, got 'no'"),
])
def test_train_says_which_argument_has_the_wrong_type(tmp_path, monkeypatch, args, options, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SkipexpError) as e:
        api.train(*args, **options)
    assert str(e.value) == message and not any(tmp_path.iterdir())


def test_folders_that_are_not_skipexp_folders(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "a.txt").write_text("x")
    for path, message in [(tmp_path / "nope", "no such folder"), (tmp_path / "photos", "not a skipexp run"),
                          (tmp_path / "a.txt", "not a folder"), (42, "expected a folder")]:
        for f in (api.load, api.curves):
            with pytest.raises(SkipexpError, match=message) as e:
                f(path)
            assert "\n" not in str(e.value)


# --- the package and the docs --------------------------------------------------------------------

def test_import_skipexp_loads_neither_torch_nor_matplotlib(folders):
    code = ("import skipexp, sys\n"
            "assert 'torch' not in sys.modules and 'skipexp.api' not in sys.modules\n"
            f"rows = skipexp.load({str(folders['compare'])!r}, as_frame=False)\n"
            f"skipexp.curves({str(folders['sweep'])!r}, as_frame=False)\n"
            "assert len(rows) == 2 and skipexp.train and 'train' in dir(skipexp)\n"
            "assert not {'torch', 'matplotlib'} & set(sys.modules), 'reading folders loaded torch or matplotlib'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert skipexp.load is api.load and skipexp.curves is api.curves and skipexp.train is api.train
    with pytest.raises(AttributeError):
        skipexp.nothing_here  # noqa: B018 (the attribute lookup is the test)


def test_train_leaves_a_notebooks_matplotlib_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot\n"
            "import skipexp\n"
            f"skipexp.train({ {**TINY, 'log': {**TINY['log'], 'plots': True}}!r}, out={str(tmp_path)!r})\n"
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


DOC = REPO / "docs" / "python-api.md"


def test_the_docs_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    assert len([line for line in block.splitlines() if line.strip()]) <= 5
    (tmp_path / "configs").mkdir()
    _yaml(tmp_path / "configs" / "skip.yaml", {**TINY, "name": "skip"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    scope: dict = {}
    exec(compile(block, str(DOC), "exec"), scope)
    assert [r.status for r in scope["runs"]] == ["completed", "completed"]
    assert list(scope["df"]["model.depth"]) == [8, 8]
    assert sorted(os.listdir(tmp_path / "runs"))[0].endswith("-skip-seed0")


def test_the_docs_examples_of_curves_and_load_run_on_folders_with_seeds(folders):
    """Every ``python`` block of the docs after the first, on a comparison and a sweep: the comparison with two
    seeds per member (a pivot over member alone would find each step twice)."""
    pytest.importorskip("pandas")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[1:]
    assert len(blocks) == 2
    where = {"runs/sweep-depth": str(folders["sweep"]), "runs/compare-20260101-120000": str(folders["compare_seeds"])}
    for block in blocks:
        for old, new in where.items():
            block = block.replace(old, new)
        scope: dict = {"skipexp": skipexp}
        exec(compile(block.replace(".plot()", ""), str(DOC), "exec"), scope)
    c = scope["c"]
    table = c.pivot_table(index="step", columns="member", values="test_acc")
    assert list(table.columns) == ["plain", "skip"]
    for member in ("plain", "skip"):   # the mean over the member's two seeds
        mine = c[c["member"] == member]
        assert table[member].tolist() == pytest.approx(mine.groupby("step")["test_acc"].mean().tolist())


def test_the_docs_show_every_function_with_its_signature():
    text = DOC.read_text()
    for name in skipexp.__all__:
        sig = inspect.signature(getattr(skipexp, name))
        bare = sig.replace(parameters=[p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()],
                           return_annotation=inspect.Signature.empty)
        assert f"`skipexp.{name}{bare}`" in text, f"docs/python-api.md lacks skipexp.{name}{bare}"
