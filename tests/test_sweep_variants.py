"""Named variant axes in sweep files (a label per variant of several keys), and points without plots."""
import csv
import json
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import TINY, assert_same_numbers, cli, run_cli, write_config

from skipexp.experiments.sweep import groups as groups_mod
from skipexp.experiments.sweep import spec
from skipexp.experiments.sweep.overrides import resolve

SHORTCUTS = {
    "identity": {},
    "projection": {"model.skip.kind": "projection", "model.skip.project": "always"},
    "scaled": {"model.skip.kind": "identity", "model.skip.scale": 0.5},
    "plain": {"model.skip.kind": "none"},
}


def _base(tmp_path: Path, **dotted) -> Path:
    """TINY (one epoch) with no log.plots of its own, unless given."""
    cfg = json.loads(json.dumps(TINY))
    del cfg["log"]["plots"]
    return write_config(tmp_path / "base.yaml", {"train.epochs": 1, **dotted}, base=cfg)


def _sweep_file(tmp_path: Path, grid: dict, **extra) -> Path:
    if not (tmp_path / "base.yaml").exists():
        _base(tmp_path)
    path = tmp_path / "shortcuts.yaml"
    path.write_text(yaml.safe_dump({"name": "sc", "base": "base.yaml", "grid": grid, **extra}, sort_keys=False))
    return path


def _config(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_a_named_axis_names_points_by_label_and_sets_its_variant_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _sweep_file(tmp_path, {"shortcut": SHORTCUTS, "seed": [0, 1]})
    pts = spec.points(spec.load(path), Path("runs"))
    assert [p.name for p in pts[:3]] == ["shortcut=identity,seed=0", "shortcut=identity,seed=1",
                                         "shortcut=projection,seed=0"]
    assert pts[2].values == {"shortcut": "projection", "seed": 0}
    assert pts[2].argv == ["skipexp", "train", "base.yaml", "log.plots=false", "model.skip.kind=projection",
                           "model.skip.project=always", "seed=0", "--run-dir",
                           "runs/sweep-sc/shortcut=projection,seed=0", "--resume"]
    assert pts[4].cfg.model.skip.scale == 0.5 and pts[6].cfg.model.skip.kind == "none"
    # identity, scaled (a per-model scale) and plain (none joins identity) stack; a projection on every
    # block is another structure
    assert [[p.name.split(",")[0] for p in g.points][::2] for g in groups_mod.groups(pts)] == [
        ["shortcut=identity", "shortcut=scaled", "shortcut=plain"], ["shortcut=projection"]]


def test_a_sweep_with_a_named_axis_runs_lists_and_reports_from_its_folder(tmp_path):
    path = _sweep_file(tmp_path, {"shortcut": SHORTCUTS, "seed": [0, 1]})
    out = tmp_path / "runs"
    root = out / "sweep-sc"
    listed = cli("sweep", path, "--out", out, "--list", check=0).stdout.splitlines()
    assert listed[0] == ("# group 1 (6 points): shortcut=identity,seed=0 shortcut=identity,seed=1 "
                         "shortcut=scaled,seed=0 shortcut=scaled,seed=1 shortcut=plain,seed=0 shortcut=plain,seed=1")
    assert listed[2] == "# group 2 (2 points): shortcut=projection,seed=0 shortcut=projection,seed=1"
    # the folder's sweep.yaml keeps the variants: a listed command, as its own process, runs its group from it
    assert yaml.safe_load((root / "sweep.yaml").read_text())["grid"]["shortcut"] == SHORTCUTS
    argv = shlex.split(listed[3])
    assert argv[2] == str(root / "sweep.yaml") and argv[3:5] == ["--group", "2"]
    run_cli(*argv[1:], check=0)
    for seed in (0, 1):
        cfg = _config(root / f"shortcut=projection,seed={seed}")
        assert cfg["model"]["skip"]["kind"] == "projection" and cfg["model"]["skip"]["project"] == "always"
        assert cfg["log"]["plots"] is False
    make = cli("sweep", root / "sweep.yaml", "--out", out, "--list", "--format", "make", check=0).stdout
    assert f"sweep {root / 'sweep.yaml'} --group 1 --out {out}" in make

    p = cli("sweep", path, "--out", out, check=0)
    assert "2 point(s) already done, skipped" in p.stderr
    for name, variant in SHORTCUTS.items():
        cfg = _config(root / f"shortcut={name},seed=0")
        for k, v in variant.items():
            assert cfg["model"]["skip"][k.split(".")[-1]] == v, (name, k)
    assert sorted(d.name for d in root.iterdir() if (d / "meta.json").is_file()) == sorted(
        f"shortcut={name},seed={s}" for name in SHORTCUTS for s in (0, 1))
    # no point drew plots of its own; the sweep drew its own, the labels as categories
    assert not list(root.glob("*/plots"))
    assert (root / "plots" / "shortcut.png").is_file()
    with open(root / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["shortcut", "seed", "point"]
    assert [r["shortcut"] for r in rows[::2]] == list(SHORTCUTS)
    assert {r["status"] for r in rows} == {"completed"}

    assert [v for _, v, _ in spec.folder_points(root)][2] == {"shortcut": "projection", "seed": 0}
    p = cli("report", root, check=0)
    assert "projection" in p.stdout and "scaled" in p.stdout
    p = cli("sweep", root / "sweep.yaml", "--out", out, "--group", "1", check=0)
    assert p.stderr.count("nothing to do") == 6
    # a point's plots on demand
    point = root / "shortcut=scaled,seed=1"
    cli("report", point, check=0)
    assert (point / "plots" / "grad_heatmap.png").is_file()

    # the point's own command, alone into another folder, computes what the sweep computed
    pt = next(p for p in spec.points(spec.load(path), out) if p.name == "shortcut=scaled,seed=0")
    at = pt.argv.index("--run-dir")
    lone = tmp_path / "lone"
    cli(*pt.argv[1:at], "--run-dir", lone, check=0)
    assert _config(lone) == _config(pt.run_dir)
    assert not (lone / "plots").exists()
    assert_same_numbers(pt.run_dir, lone, checkpoint=False)


def test_command_line_overrides_on_a_sweep_with_a_named_axis(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    variants = {k: SHORTCUTS[k] for k in ("identity", "projection", "scaled")}
    path = _sweep_file(tmp_path, {"shortcut": variants, "seed": [0, 1]})
    # like a Hydra config group: the labels to keep
    sw = resolve(path, ["shortcut=scaled,identity", "seed=0"])
    assert [p.name for p in spec.points(sw, Path("runs"))] == ["shortcut=scaled,seed=0", "shortcut=identity,seed=0"]
    sw = resolve(path, ["shortcut=projection"])
    assert [p.name for p in spec.points(sw, Path("runs"))] == ["shortcut=projection,seed=0",
                                                                 "shortcut=projection,seed=1"]
    # a key the variants set is theirs: one value would leave labels naming variants that no longer
    # differ (shortcut=identity training a plain net), a list would undo them: both refused
    for args, message in ((["model.skip.kind=none,identity"], "model.skip.kind: is set by the variants of the "
                                                              "named axis shortcut"),
                          (["model.skip.kind=none"], "model.skip.kind: is set by the variants of the named axis "
                                                     "shortcut; choose variants with shortcut=LABEL,..."),
                          (["model.skip.scale=0.25"], "model.skip.scale: is set by the variants"),
                          (["model.skip=[1,2],[3]"], "model.skip: is set by the variants"),
                          (["shortcut=scaled,bogus"], "shortcut: no variant 'bogus'; its variants: identity, "
                                                      "projection, scaled"),
                          (["shortcut=scald"], 'no variant \'scald\' (did you mean "scaled"?)')):
        p = cli("sweep", path, *args, "--out", tmp_path / "other", check=2)
        assert message in p.stderr and p.stderr.count("\n") == 1, p.stderr
        assert str(path) in p.stderr
    assert not (tmp_path / "other").exists()


BAD = [
    ({"model": {"a": {}}}, "grid.model", "a named axis"),
    ({"my.axis": {"a": {}}}, "grid.my.axis", "a named axis"),
    ({"seed": {"a": {}}}, "grid.seed", "a named axis"),
    ({"shortcut": {}}, "grid.shortcut", "has no variants"),
    ({"shortcut": {"a/b": {}}}, "grid.shortcut.a/b", "the label 'a/b' names folders"),
    ({"shortcut": {1: {}}}, "grid.shortcut.1", "the label 1 names folders"),
    ({"shortcut": {"scaled": [0.5]}}, "grid.shortcut.scaled", "a variant is a mapping of dotted keys"),
    ({"shortcut": {"scaled": {"model skip": 1}}}, "grid.shortcut.scaled", "is not a dotted key"),
    ({"shortcut": {"scaled": {"name": "x"}}}, "grid.shortcut.scaled", "name cannot be set"),
    ({"shortcut": {"a": {"model.skip": "none", "model.skip.scale": 0.5}}}, "grid.shortcut.a",
     "sets model.skip and model.skip.scale inside it"),
    ({"shortcut": {"a": {"model.skip": {"scale": 1.0}, "model.skip.scale": 0.5}}}, "grid.shortcut.a",
     "sets model.skip.scale twice"),
    ({"shortcut": SHORTCUTS, "model.skip.kind": ["none"]}, "grid.shortcut.projection",
     "sets model.skip.kind, which grid.model.skip.kind sets too"),
    ({"shortcut": SHORTCUTS, "other": {"x": {"model.skip.scale": 0.5}}}, "grid.other.x",
     "sets model.skip.scale, which grid.shortcut.scaled sets too"),
    ({"shortcut": {"a": {"model.skip.kind": "bogus"}}, "seed": [0]}, "grid.shortcut.a",
     "point shortcut=a,seed=0: model.skip.kind: unknown skip kind 'bogus'"),
    ({"shortcut": {"a": {"model.skip.knd": "none"}}}, "grid.shortcut.a",
     'point shortcut=a: model.skip.knd: unknown key (did you mean "model.skip.kind"?)'),
]


@pytest.mark.parametrize("grid,key,message", BAD)
def test_a_bad_named_axis_is_one_line_naming_file_and_key(tmp_path, grid, key, message):
    path = _sweep_file(tmp_path, grid)
    out = tmp_path / "runs"
    p = cli("sweep", path, "--out", out, check=2)
    assert p.stderr.startswith(f"error: {path}: {key}: ") and p.stderr.count("\n") == 1, p.stderr
    assert message in p.stderr, p.stderr
    assert not out.exists()


def test_a_variant_key_that_overlaps_a_fixed_override_is_refused(tmp_path):
    path = _sweep_file(tmp_path, {"shortcut": SHORTCUTS}, overrides={"model.skip": {"kind": "identity"}})
    p = cli("sweep", path, "--out", tmp_path / "runs", check=2)
    assert (f"{path}: grid.shortcut.projection: sets model.skip.kind, which overrides.model.skip.kind sets too"
            in p.stderr)
    assert p.stderr.count("\n") == 1 and not (tmp_path / "runs").exists()


def test_a_mapping_in_a_variant_or_a_fixed_override_merges_into_the_base(tmp_path, monkeypatch):
    """A variant ``{model: {skip: {kind: none}}}`` sets model.skip.kind and keeps the base's depth and its other
    skip keys; a mapping two levels deep and a list-valued key inside one merge the same way."""
    monkeypatch.chdir(tmp_path)
    _base(tmp_path, **{"model.depth": 4, "model.width": 8, "model.skip.span": 2, "train.lr": 0.07})
    variants = {
        "plain": {"model": {"skip": {"kind": "none"}}},
        "some": {"model": {"skip": {"blocks": [1]}, "width": [8, 8, 8, 8]}},
    }
    path = _sweep_file(tmp_path, {"shortcut": variants, "seed": [0]},
                       overrides={"train": {"momentum": 0.5}, "model.skip": {"every": 2}})
    pts = {p.values["shortcut"]: p.cfg for p in spec.points(spec.load(path), Path("runs"))}
    plain, some = pts["plain"], pts["some"]
    assert plain.model.skip.kind == "none" and plain.model.depth == 4 and plain.model.width == 8
    assert plain.model.skip.span == 2 and plain.model.skip.every == 2
    assert some.model.skip.kind == "identity" and some.model.skip.blocks == [1] and some.model.width == [8, 8, 8, 8]
    assert some.model.depth == 4 and some.model.skip.span == 2
    for cfg in (plain, some):
        assert cfg.train.momentum == 0.5 and cfg.train.lr == 0.07 and cfg.train.epochs == 1


@pytest.mark.parametrize("where", ["base", "overrides", "variant"])
def test_points_draw_their_plots_when_log_plots_is_set(tmp_path, where):
    if where == "base":
        _base(tmp_path, **{"log.plots": True})
    grid = {"seed": [0]}
    if where == "variant":
        grid["shortcut"] = {"drawn": {"log.plots": True}}
    path = _sweep_file(tmp_path, grid, **({"overrides": {"log.plots": True}} if where == "overrides" else {}))
    out = tmp_path / "runs"
    pts = spec.points(spec.load(path), out)
    assert "log.plots=false" not in pts[0].argv and pts[0].cfg.log.plots is True
    if where == "base":  # one real sweep shows the point drawing; the cases differ only in where the key is
        cli("sweep", path, "--out", out, check=0)
        assert (pts[0].run_dir / "plots" / "grad_heatmap.png").is_file()
        assert _config(pts[0].run_dir)["log"]["plots"] is True


def test_a_point_folder_made_with_plots_is_still_the_sweeps(tmp_path):
    # a folder made before points went without plots holds log.plots: true; it is the same experiment
    path = _sweep_file(tmp_path, {"seed": [0]})
    out = tmp_path / "runs"
    cli("sweep", path, "--out", out, check=0)
    run_dir = spec.points(spec.load(path), out)[0].run_dir
    cfg = _config(run_dir)
    assert cfg["log"]["plots"] is False
    cfg["log"]["plots"] = True
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = cli("sweep", path, "--out", out, check=0)
    assert "1 point(s) already done, skipped" in p.stderr
