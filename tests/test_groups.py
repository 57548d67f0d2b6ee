"""A sweep's points in groups that train together: numbering, parts, and a group run in this process
equal to lone `skipexp train` runs of its points."""
import json
from pathlib import Path

import pytest
import yaml
from conftest import assert_same_numbers, cli, write_config

from skipexp.core.errors import SkipexpError
from skipexp.experiments.sweep import groups, spec


def _sweep(tmp_path: Path, grid: dict, base: dict | None = None) -> tuple[Path, list]:
    write_config(tmp_path / "tiny.yaml", {"train.epochs": 1, **(base or {})})
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump({"name": "g", "base": "tiny.yaml", "grid": grid}, sort_keys=False))
    return path, spec.points(spec.load(path), tmp_path / "runs")


def test_points_that_share_a_shape_form_numbered_groups(tmp_path):
    _, pts = _sweep(tmp_path, {"model.depth": [2, 4], "model.skip.kind": ["none", "identity"], "seed": [0, 1],
                               "train.lr": [0.05, 0.1]})
    gs = groups.groups(pts)
    assert [g.number for g in gs] == [1, 2]
    assert [len(g.points) for g in gs] == [8, 8]
    assert all(p.values["model.depth"] == 2 for p in gs[0].points)
    assert gs[0].points == pts[:8]  # grid order within a group
    assert gs[1].label == "group 2: depth=4,skip.kind=none,seed=0,train.lr=0.05 … (8 points)"
    # a part is cut from the whole group, the same whatever is done
    cut = groups.parts(gs[1], 3)
    assert [len(c.points) for c in cut] == [3, 3, 2] and [c.part for c in cut] == [(1, 3), (2, 3), (3, 3)]
    assert [p for c in cut for p in c.points] == gs[1].points
    assert cut[0].label.startswith("group 2 part 1/3: depth=4,skip.kind=none,seed=0")
    assert groups.select(pts, 2, (2, 3)) == cut[1]
    assert groups.with_argv(cut[1], "runs/sweep-g/sweep.yaml", None).argv == [
        "skipexp", "sweep", "runs/sweep-g/sweep.yaml", "--group", "2", "--part", "2/3"]
    assert groups.with_argv(gs[0], "s.yaml", "out").argv == ["skipexp", "sweep", "s.yaml", "--group", "1",
                                                             "--out", "out"]
    for number, part, key in ((3, (1, 1), "--group"), (0, (1, 1), "--group"), (1, (3, 2), "--part")):
        with pytest.raises(SkipexpError) as e:
            groups.select(pts, number, part)
        assert e.value.key == key
    assert groups.parse_part("1/2") == (1, 2)
    with pytest.raises(SkipexpError, match="must be i/k"):
        groups.parse_part("2")



def test_the_longest_groups_start_first(tmp_path, monkeypatch):
    """Deep and wide nets before shallow ones, so that the last group to end is a short one."""
    from skipexp.experiments.sweep import backends

    path, pts = _sweep(tmp_path, {"model.depth": [2, 8, 4], "model.width": [16, 32], "seed": [0, 1]})
    started = []
    monkeypatch.setitem(backends.BACKENDS, "local", lambda gs, *a, **k: started.extend(gs) or [])
    backends.run(spec.load(path), pts, tmp_path / "runs", jobs=1)
    assert [(g.points[0].values["model.depth"], g.points[0].values["model.width"]) for g in started] == [
        (8, 32), (4, 32), (2, 32), (8, 16), (4, 16), (2, 16)]
    assert [g.number for g in started] == [4, 6, 2, 3, 5, 1]   # numbers stay those of grid order

def test_spread_cuts_the_biggest_group_while_workers_are_idle(tmp_path):
    _, pts = _sweep(tmp_path, {"model.depth": [2, 4, 6], "seed": [0, 1, 2, 3]})
    (tmp_path / "one").mkdir()
    _, one = _sweep(tmp_path / "one", {"seed": [0, 1, 2, 3, 4]})
    gs, big = groups.groups(pts), groups.groups(one)
    assert len(gs) == 3 and len(big) == 1
    assert groups.spread(gs, 2) == gs  # already one group per worker
    assert [(g.number, g.part, len(g.points)) for g in groups.spread(big, 2)] == [(1, (1, 2), 3), (1, (2, 2), 2)]
    assert [g.part for g in groups.spread(gs, 4)] == [(1, 2), (2, 2), (1, 1), (1, 1)]
    assert len(groups.spread(big, 8)) == 5  # at most one point a part


def test_a_group_trains_together_and_each_point_equals_its_lone_train(tmp_path):
    path, pts = _sweep(tmp_path, {"model.skip.kind": ["none", "identity"], "train.lr": [0.05, 0.1], "seed": [0, 1]})
    (g,) = groups.groups(pts)
    heard = []
    got = groups.run_group(g, reporter_for=lambda label: heard.append(label))
    assert heard == ["group 1: skip.kind=none,train.lr=0.05,seed=0 … (8 points)"]
    assert [s for _, s in got] == ["completed"] * 8
    for p in pts:
        meta = json.loads((p.run_dir / "meta.json").read_text())
        assert meta["vectorized"] is True and len(meta["seeds_together"]) == 8
    # the oracle: a lone `skipexp train` of each point's overrides (config threads, no override)
    for p in pts[::3]:
        overrides = [f"{k}={v}" for k, v in p.values.items()]
        lone = tmp_path / "lone" / p.name
        cli("train", tmp_path / "tiny.yaml", *overrides, "--run-dir", lone, check=0)
        assert_same_numbers(p.run_dir, lone)
        assert yaml.safe_load((lone / "config.yaml").read_text()) == yaml.safe_load(
            (p.run_dir / "config.yaml").read_text())


def test_run_group_skips_done_resumes_interrupted_alone_and_trains_the_rest_together(tmp_path):
    _, pts = _sweep(tmp_path, {"seed": [0, 1, 2, 3]}, {"train.epochs": 2})
    (g,) = groups.groups(pts)
    done, interrupted, stale, new = pts
    first = groups.Group(1, [done, interrupted])
    assert [s for _, s in groups.run_group(first)] == ["completed", "completed"]
    meta = json.loads((interrupted.run_dir / "meta.json").read_text())
    meta["status"] = "interrupted"
    (interrupted.run_dir / "meta.json").write_text(json.dumps(meta))
    stale.run_dir.mkdir(parents=True)
    mtime = (done.run_dir / "meta.json").stat().st_mtime_ns
    heard, notes = [], []
    got = groups.run_group(g, reporter_for=lambda label: heard.append(label), notify=notes.append)
    assert [s for _, s in got] == ["completed"] * 4
    assert (done.run_dir / "meta.json").stat().st_mtime_ns == mtime
    assert len(json.loads((interrupted.run_dir / "meta.json").read_text())["resumes"]) == 1
    assert heard[-1] == "group 1: seed=2 … (2 points)"  # the fresh ones, together
    for p in (stale, new):
        assert json.loads((p.run_dir / "meta.json").read_text())["seeds_together"] == [2, 3]
    assert len(list(stale.run_dir.parent.glob("seed=2.stale-*"))) == 1
    assert any("already completed" in n for n in notes) and any("moved it to" in n for n in notes)


def test_spread_of_no_groups_is_none():
    assert groups.spread([], 2) == []
