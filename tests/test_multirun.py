"""skipexp sweep from the command line: KEY=V1,V2 overrides as grid axes, and overrides on a sweep file."""
import json
import signal
from pathlib import Path

import pytest
import yaml
from conftest import write_config

from skipexp import cli
from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import overrides as ov
from skipexp.experiments.sweep import spec

# tiny points: a few steps on a few examples, so each point is mostly its process start-up
FAST = {"data.n_train": 128, "data.n_test": 64, "train.steps": 3, "train.threads": 1, "log.every": 1}


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """The sweep command installs its Ctrl-C handler in this process; give the test runner its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def skipexp(*args) -> int:
    """Run the real CLI in this process; its exit code."""
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


# --- parsing, pure ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,items", [
    ("2,4,8", ["2", "4", "8"]),
    ("none,identity", ["none", "identity"]),
    ("[0,1,2]", ["[0,1,2]"]),                        # a YAML list is one value
    ("[64,32],[32,32]", ["[64,32]", "[32,32]"]),     # an axis of two lists
    ("{kind: none, every: 2},{kind: identity}", ["{kind: none, every: 2}", "{kind: identity}"]),
    ("'a,b'", ["'a,b'"]),                            # a quoted comma is text
    ("'a,b',c", ["'a,b'", "c"]),
    ('"x\\",y",z', ['"x\\",y"', "z"]),               # an escaped quote inside double quotes
    ("it's,ok", ["it's", "ok"]),                     # a quote inside a word opens nothing
    ("[1,2", ["[1,2"]),                              # unbalanced: one item, for YAML to refuse
    ("0.1", ["0.1"]),
    ("", [""]),
])
def test_split_items_only_at_top_level_commas(text, items):
    assert ov.split_items(text) == items


def test_comma_lists_become_axes_in_order_and_single_values_fixed():
    p = ov.parse(["seed=0,1,2", "model.depth=8,2,4", "train.lr=0.1", "model.width=[64,32]",
                  "model.skip.kind=none,'identity'", "data.root='/a,b'", "train.grad_clip="])
    assert list(p.axes) == ["seed", "model.depth", "model.skip.kind"]
    assert p.axes == {"seed": [0, 1, 2], "model.depth": [8, 2, 4], "model.skip.kind": ["none", "identity"]}
    assert p.fixed == {"train.lr": 0.1, "model.width": [64, 32], "data.root": "/a,b", "train.grad_clip": None}
    p = ov.parse(["seed=[0,1,2]", "model.width=[64,32],[32,32]"])
    assert p.fixed == {"seed": [0, 1, 2]} and p.axes == {"model.width": [[64, 32], [32, 32]]}


@pytest.mark.parametrize("args,message", [
    (["model.depth=2,4", "model.depth=8"], "model.depth: given twice (model.depth=2,4 and model.depth=8)"),
    (["model.depth=2,,4"], "model.depth: empty item in the comma list '2,,4'"),
    (["model.depth=2,"], "model.depth: empty item in the comma list '2,'"),
    (["model.depth=2,4,2"], "model.depth: the value 2 is listed twice"),
    (["name=a,b"], "name: points are named from their values; name the sweep with --name instead"),
    (["name=a"], "name: points are named from their values"),
    (["model.skip={kind: none}", "model.skip.kind=none,identity"], "model.skip.kind: is set twice"),
    (["model.skip=none", "model.skip.kind=none,identity"], "model.skip: overlaps model.skip.kind"),
    (["model.depth"], "'model.depth' is not an override; expected KEY=VALUE"),
    (["Model depth=1,2"], "'Model depth' is not a dotted key"),
    (["model.width=[64,32"], "model.width: cannot parse the value '[64,32'"),
])
def test_bad_overrides_are_refused_with_one_line(args, message):
    with pytest.raises(SkipexpError) as e:
        ov.parse(args)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_config_and_a_sweep_file_are_told_apart_by_what_they_hold(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nbase: tiny.yaml\ngrid: {model.depth: [2, 4]}\n")
    (tmp_path / "other.yaml").write_text("foo: 1\nbar: 2\n")
    assert ov.file_kind(cfg) == "config" and ov.file_kind(grid) == "sweep"
    with pytest.raises(SkipexpError, match=r"other\.yaml: neither a sweep file \(name, base, grid\) nor a run "
                                           r"config \(.*data, model, train, log\); it has foo, bar"):
        ov.file_kind(tmp_path / "other.yaml")


def test_a_command_line_grid_is_named_from_its_config_and_swept_keys(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml")
    sw = ov.resolve(cfg, ["model.depth=2,4", "train.lr=0.1", "model.skip.kind=none,identity"])
    assert sw.name == "tiny-depth-skip.kind" and sw.inline and sw.base == cfg.resolve()
    assert sw.grid == {"model.depth": [2, 4], "model.skip.kind": ["none", "identity"]}
    assert sw.overrides == {"train.lr": 0.1}
    assert ov.resolve(cfg, ["seed=0,1"], name="mine").name == "mine"
    with pytest.raises(SkipexpError, match="nothing to sweep: give at least one KEY=V1,V2,... override"):
        ov.resolve(cfg, ["train.lr=0.1"])
    with pytest.raises(SkipexpError, match="--name: 'a/b' may hold only"):
        ov.resolve(cfg, ["seed=0,1"], name="a/b")


def test_overrides_on_a_sweep_file_fix_add_or_replace_axes(tmp_path):
    write_config(tmp_path / "tiny.yaml")
    grid = tmp_path / "g.yaml"
    grid.write_text("name: g\nbase: tiny.yaml\ngrid:\n  model.depth: [2, 4]\n  seed: [0, 1, 2]\n"
                    "overrides: {train.lr: 0.1, train.epochs: 1}\n")
    sw = ov.resolve(grid, ["train.lr=0.2", "seed=5", "model.skip.kind=none,identity", "model.depth=8,16",
                           "train.epochs=1,2"])
    assert sw.name == "g" and not sw.inline
    # replaced axes keep their place, new ones come last, a single value of a grid key is a one-value axis
    assert sw.grid == {"model.depth": [8, 16], "seed": [5], "model.skip.kind": ["none", "identity"],
                       "train.epochs": [1, 2]}
    assert sw.overrides == {"train.lr": 0.2}  # the command line wins; a key swept now is no longer fixed
    with pytest.raises(SkipexpError, match="model.skip.kind: is set twice"):
        ov.resolve(grid, ["model.skip={kind: none}", "model.skip.kind=none,identity"])
    # a mapping sets only the keys inside it: beside an axis of another key of its section, it merges
    sw = ov.resolve(grid, ["model.skip={span: 1}", "model.skip.kind=none,identity"])
    assert sw.overrides["model.skip"] == {"span": 1} and sw.grid["model.skip.kind"] == ["none", "identity"]
    grid.write_text("name: g\nbase: tiny.yaml\ngrid: {seed: [0, 1]}\noverrides: {seed: 3}\n")
    with pytest.raises(SkipexpError, match="overrides.seed: is also a grid key"):
        spec.load(grid)


def test_a_seed_list_is_one_value_and_refused_with_the_axis_to_write(tmp_path):
    cfg = write_config(tmp_path / "tiny.yaml")
    sw = ov.resolve(cfg, ["seed=[0,1]", "model.depth=2,4"])
    with pytest.raises(SkipexpError, match=r"seed: a list is one value, and a point trains one seed; sweep the "
                                           r"seeds instead \(seed=0,1,2 on the command line"):
        spec.points(sw, tmp_path / "runs")


# --- the command --------------------------------------------------------------------------------

def test_list_prints_the_fixed_overrides_in_every_command(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "tiny.yaml")
    assert skipexp("sweep", "tiny.yaml", "model.depth=2,4", "train.lr=0.2", "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    # a group per depth; each command reads the sweep folder's sweep.yaml, which holds the fixed values
    assert lines == [f"# group {n} (1 point): depth={d}" if i % 2 == 0 else
                     f"skipexp sweep runs/sweep-tiny-depth/sweep.yaml --group {n}"
                     for n, d in ((1, 2), (2, 4)) for i in (0, 1)]
    assert yaml.safe_load(Path("runs/sweep-tiny-depth/sweep.yaml").read_text())["overrides"] == {"train.lr": 0.2}
    # a point's own command carries them too, and no thread count but the user's
    sw = ov.resolve(Path("tiny.yaml"), ["model.depth=2,4", "train.lr=0.2"])
    assert [p.argv for p in spec.points(sw, Path("runs"))] == [
        ["skipexp", "train", "tiny.yaml", "train.lr=0.2", f"model.depth={d}",
         "--run-dir", f"runs/sweep-tiny-depth/depth={d}", "--resume"] for d in (2, 4)]
    sw = ov.resolve(Path("tiny.yaml"), ["model.depth=2,4", "train.threads=3"])
    for p in spec.points(sw, Path("runs")):
        assert [a for a in p.argv if a.startswith("train.threads=")] == ["train.threads=3"]
    # a sweep file with overrides: its Makefile's group reads them from sweep.yaml, and the rerun line has them
    (tmp_path / "g.yaml").write_text("name: g\nbase: tiny.yaml\ngrid: {model.depth: [2]}\n")
    assert skipexp("sweep", "g.yaml", "train.lr=0.3", "--list", "--format", "make") == 0
    mk = capsys.readouterr().out
    assert "\t$(SKIPEXP) sweep runs/sweep-g/sweep.yaml --group 1\n" in mk
    assert yaml.safe_load(Path("runs/sweep-g/sweep.yaml").read_text())["overrides"] == {"train.lr": 0.3}
    assert "\t$(SKIPEXP) sweep g.yaml train.lr=0.3 --jobs 1\n" in mk
    # a grid on the command line: make's last step reruns that very command
    assert skipexp("sweep", "tiny.yaml", "model.depth=2,4", "--name", "d", "--list", "--format", "make") == 0
    mk = capsys.readouterr().out
    assert "\t$(SKIPEXP) sweep tiny.yaml model.depth=2,4 --name d --jobs 1\n" in mk
    assert "P1 := runs/sweep-d/depth=4" in mk


@pytest.mark.parametrize("args,message", [
    (["other.yaml", "seed=0,1"], "other.yaml: neither a sweep file"),
    (["tiny.yaml", "train.lr=0.1"], "tiny.yaml: nothing to sweep"),
    (["tiny.yaml", "model.depth=2,0"], "tiny.yaml: model.depth: point depth=0: must be > 0, got 0"),
    (["tiny.yaml", "seed=0,1", "seed=2"], "seed: given twice"),
    (["g.yaml", "model.dpth=2,4"],
     'g.yaml: grid.model.dpth: point depth=2,dpth=2: unknown key (did you mean "model.depth"?)'),
])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "tiny.yaml")
    (tmp_path / "other.yaml").write_text("foo: 1\n")
    (tmp_path / "g.yaml").write_text("name: g\nbase: tiny.yaml\ngrid: {model.depth: [2]}\n")
    assert skipexp("sweep", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def _mtimes(root: Path) -> dict[str, int]:
    return {p.name: (p / "meta.json").stat().st_mtime_ns for p in root.iterdir() if (p / "meta.json").is_file()}


def test_a_command_line_grid_runs_reports_and_resumes_like_a_sweep_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "tiny.yaml", FAST)
    args = ["sweep", "tiny.yaml", "model.depth=1,2", "seed=0,1", "model.width=8", "--jobs", "2"]
    assert skipexp(*args) == 0
    root = tmp_path / "runs" / "sweep-tiny-depth-seed"
    names = {f"depth={d},seed={s}" for d in (1, 2) for s in (0, 1)}
    assert {p.name for p in root.iterdir() if p.is_dir() and p.name != "plots"} == names
    for d in (1, 2):
        for s in (0, 1):
            cfg = yaml.safe_load((root / f"depth={d},seed={s}" / "config.yaml").read_text())
            assert (cfg["model"]["depth"], cfg["seed"], cfg["model"]["width"], cfg["train"]["steps"]) == (d, s, 8, 3)
    rows = (root / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("model.depth,seed,point,status,") and len(rows) == 5
    assert all(",completed," in r for r in rows[1:])
    spec = yaml.safe_load((root / "sweep.yaml").read_text())
    assert spec["grid"] == {"model.depth": [1, 2], "seed": [0, 1]} and spec["overrides"] == {"model.width": 8}
    assert Path(spec["base"]) == (tmp_path / "tiny.yaml").resolve()
    capsys.readouterr()

    # the same command again: every point is done and nothing is trained
    before = _mtimes(root)
    assert skipexp(*args) == 0
    assert "4 point(s) already done, skipped" in capsys.readouterr().err
    assert _mtimes(root) == before

    # the folder's sweep.yaml is a sweep file of the same sweep, and report reads the folder
    assert skipexp("sweep", root / "sweep.yaml") == 0
    assert _mtimes(root) == before
    assert skipexp("report", root) == 0
    assert (root / "summary.csv").read_text().splitlines() == rows

    # other fixed overrides are another experiment: refused before anything is written
    spec_text = (root / "sweep.yaml").read_text()
    assert skipexp("sweep", "tiny.yaml", "model.depth=1,2", "seed=0,1", "model.width=16") == 2
    err = capsys.readouterr().err
    assert "holds a run with model.width=8, not 16" in err and "another --name" in err
    assert (root / "sweep.yaml").read_text() == spec_text and _mtimes(root) == before


def test_a_sweep_file_with_overrides_runs_them_on_every_point(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path / "tiny.yaml", FAST)
    (tmp_path / "g.yaml").write_text("name: g\nbase: tiny.yaml\ngrid: {model.depth: [1, 2, 3], seed: [0]}\n")
    assert skipexp("sweep", "g.yaml", "model.depth=2", "model.skip.kind=none,identity", "model.width=8",
                   "--name", "g-narrow", "--jobs", "2") == 0
    root = tmp_path / "runs" / "sweep-g-narrow"
    rows = (root / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("model.depth,seed,model.skip.kind,point,status,") and len(rows) == 3
    for kind in ("none", "identity"):
        d = root / f"depth=2,seed=0,skip.kind={kind}"
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        assert (cfg["model"]["depth"], cfg["model"]["width"], cfg["model"]["skip"]["kind"]) == (2, 8, kind)
        assert json.loads((d / "meta.json").read_text())["status"] == "completed"
    assert yaml.safe_load((root / "sweep.yaml").read_text())["overrides"] == {"model.width": 8}
    assert not (tmp_path / "runs" / "sweep-g").exists()
