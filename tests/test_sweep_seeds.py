"""A sweep over seeds: summary-seeds.csv, the table over seeds, curves.png, and report of the same folder."""
import csv
import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
import yaml
from conftest import cli, write_config

from skipexp.experiments.report import SEEDS_NOTE
from skipexp.experiments.sweep import results as sweep_summary
from skipexp.rundir import files
from skipexp.rundir.summary import describe

PNG = b"\x89PNG\r\n\x1a\n"

try:
    from scipy import stats as scipy_stats
except ImportError:   # the CIs are checked against scipy where it is installed (tests/test_stats.py too)
    scipy_stats = None


def _stats(values: list[float]) -> dict:
    """The oracle: what the statistics module says of the values."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def _sweep(tmp: Path, grid: dict) -> tuple[Path, str]:
    write_config(tmp / "tiny.yaml", {"train.epochs": 1})
    (tmp / "s.yaml").write_text(yaml.safe_dump({"name": "s", "base": "tiny.yaml", "grid": grid}, sort_keys=False))
    r = cli("sweep", tmp / "s.yaml", "--out", tmp / "runs", check=0)
    return tmp / "runs" / "sweep-s", r.stdout


pytestmark = pytest.mark.xdist_group("sweep-seeds")   # one worker trains the module fixture once


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A finished sweep of depth [1, 2] x seed [0, 1, 2]: its folder and what ``sweep`` printed."""
    return _sweep(tmp_path_factory.mktemp("seeded"), {"model.depth": [1, 2], "seed": [0, 1, 2]})


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _table(stdout: str) -> list[str]:
    """The table's lines, from its title to the line under it."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("sweep s:"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("└"))
    return lines[start:end + 2]


def test_describe_matches_statistics():
    vals = [0.25, 1.5, 2.0, 0.125]
    got = describe(vals)
    assert got["mean"] == pytest.approx(statistics.mean(vals), rel=1e-15)
    assert got["std"] == pytest.approx(statistics.stdev(vals), rel=1e-15)
    assert (got["min"], got["max"]) == (0.125, 2.0)
    assert describe([3.0]) == {"mean": 3.0, "std": None, "min": 3.0, "max": 3.0}
    assert math.isnan(describe([1.0, float("nan")])["mean"]) and math.isnan(describe([1.0, math.inf])["std"])


def test_over_seeds_leaves_out_diverged_missing_and_nan_seeds():
    rows = [{"model.depth": 2, "seed": s, "status": st, "final_train_loss": loss, "final_test_acc": acc}
            for s, st, loss, acc in ((0, "completed", 0.5, 0.75), (1, "completed", 0.25, 0.5),
                                     (2, "diverged", 1e4, 0.1), (3, "interrupted", float("nan"), 0.625),
                                     (4, "missing", None, None))]
    rows.append({"model.depth": 4, "seed": 0, "status": "completed", "final_train_loss": 1.0})
    agg = sweep_summary.aggregate_seeds(rows, {"model.depth": [2, 4], "seed": [0, 1, 2, 3, 4]})
    assert [r["model.depth"] for r in agg] == [2, 4]
    a = agg[0]
    assert (a["seeds"], a["completed"], a["diverged"]) == (4, 2, 1)
    assert a["statuses"] == {"completed": 2, "diverged": 1, "interrupted": 1, "missing": 1}
    loss, acc = _stats([0.5, 0.25]), _stats([0.75, 0.5, 0.625])  # the nan loss is left out, its accuracy kept
    for field, want in (("final_train_loss", loss), ("final_test_acc", acc)):
        for st, v in want.items():
            assert a[f"{field}_{st}"] == pytest.approx(v, rel=1e-15), (field, st)
    assert a["best_test_acc_mean"] is None and a["final_test_loss_std"] is None  # no seed has it
    one = agg[1]
    assert (one["final_train_loss_mean"], one["final_train_loss_std"], one["seeds"]) == (1.0, None, 1)


def test_sweep_over_seeds_writes_summary_seeds_csv_its_table_and_curves(seeded):
    root, stdout = seeded
    per_point = _read(root / files.SUMMARY_CSV)
    got = _read(root / files.SUMMARY_SEEDS_CSV)
    assert list(got[0]) == sweep_summary.seed_columns({"model.depth": [1, 2], "seed": [0, 1, 2]})
    assert [r["model.depth"] for r in got] == ["1", "2"]
    for r in got:
        mine = [p for p in per_point if p["model.depth"] == r["model.depth"]]
        assert len(mine) == 3 and r["seeds"] == r["completed"] == "3" and r["diverged"] == "0"
        for field in sweep_summary.SEED_FIELDS:
            if not mine[0][field]:   # validation fields, without a validation split
                assert r[f"{field}_mean"] == r[f"{field}_n"] == ""
                continue
            values = [float(p[field]) for p in mine]
            want = _stats(values)
            for st, v in want.items():
                assert float(r[f"{field}_{st}"]) == pytest.approx(v, rel=1e-12), (field, st)
            assert r[f"{field}_n"] == "3"
            if scipy_stats is not None and want["std"]:
                lo, hi = scipy_stats.t.interval(0.95, 2, loc=want["mean"], scale=scipy_stats.sem(values))
                assert float(r[f"{field}_ci_low"]) == pytest.approx(lo, rel=1e-9)
                assert float(r[f"{field}_ci_high"]) == pytest.approx(hi, rel=1e-9)

    table = _table(stdout)
    assert "2 configurations × 3 seeds" in table[0]
    rows = [ln for ln in table if ln.startswith("│")]
    assert len(rows) == 2 and all("±" in ln and "│ 3 " in ln for ln in rows)
    assert SEEDS_NOTE in stdout
    loss = float(got[0]["final_train_loss_mean"])
    assert f"{loss:.4g} ± {float(got[0]['final_train_loss_std']):.2g}" in rows[0]

    curves = root / files.PLOTS / "curves.png"
    assert curves.read_bytes()[:8] == PNG and (root / files.PLOTS / "depth.png").is_file()


def test_report_prints_the_same_table_and_titles_name_dataset_and_seeds(seeded, monkeypatch):
    root, stdout = seeded
    assert _table(cli("report", root, check=0).stdout) == _table(stdout)

    from skipexp.views import plots_sweep

    titles = []
    real_sweep, real_curves = plots_sweep.plot_sweep, plots_sweep.plot_sweep_curves
    monkeypatch.setattr(plots_sweep, "plot_sweep", lambda *a, **k: titles.append(k["title"]) or real_sweep(*a, **k))
    monkeypatch.setattr(plots_sweep, "plot_sweep_curves",
                        lambda *a: titles.append((a[4], a[5])) or real_curves(*a))
    _, _, plots = sweep_summary.rebuild(root, refresh=False)
    assert titles == ["sweep s (synthetic, 3 seeds)", ("sweep s", "synthetic")]
    assert plots[-1] == root / files.PLOTS / "curves.png"


def test_a_diverged_seed_is_counted_apart_and_kept_off_the_axes(seeded, tmp_path):
    root = tmp_path / "sweep-s"
    shutil.copytree(seeded[0], root)
    bad = root / "depth=2,seed=1"
    metrics = (bad / files.METRICS).read_text().splitlines()
    head = metrics[0].split(",")
    last = metrics[4].split(",")  # the fourth logged row: the seed stops there, its loss blown up
    last[head.index("train_loss")] = "25000.0"
    stop = int(last[head.index("step")])
    (bad / files.METRICS).write_text("\n".join(metrics[:4] + [",".join(last)]) + "\n")
    for name in (files.GRAD_NORMS, files.ACT_GRAD_NORMS, files.ACT_NORMS, files.EVAL):   # as a real stop leaves them
        lines = (bad / name).read_text().splitlines()
        (bad / name).write_text("\n".join(lines[:1] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= stop
                                                        and (name != files.EVAL or int(ln.split(",")[0]) < stop)])
                                + "\n")
    meta = json.loads((bad / files.META).read_text())
    meta.update(status="diverged", diverged_at_step=stop)
    (bad / files.META).write_text(json.dumps(meta))

    out = cli("report", root, check=0).stdout
    row = next(ln for ln in _table(out) if ln.startswith("│ 2 "))
    assert "2/3 (1 diverged)" in row

    per_point = _read(root / files.SUMMARY_CSV)
    agg = {r["model.depth"]: r for r in _read(root / files.SUMMARY_SEEDS_CSV)}["2"]
    assert (agg["seeds"], agg["completed"], agg["diverged"]) == ("3", "2", "1")
    healthy = [float(p["final_test_acc"]) for p in per_point if p["model.depth"] == "2" and p["status"] == "completed"]
    assert float(agg["final_test_acc_mean"]) == pytest.approx(statistics.mean(healthy), rel=1e-12)

    from skipexp.views import plots_sweep

    _, rows = sweep_summary.collect(root, refresh=False)
    grid = {"model.depth": [1, 2], "seed": [0, 1, 2]}
    fig = plots_sweep.curves_figure(sweep_summary.configurations(rows, grid), grid, root, "sweep s")
    ax_l = fig.axes[0]
    assert ax_l.get_yscale() == "log" and ax_l.get_ylim()[1] < 10  # the 25000 does not stretch the loss axis
    # the depth-2 mean is over the two healthy seeds; the diverged one is a thin line that stops at its step
    line = next(ln for ln in ax_l.get_lines() if ln.get_label() == "2 blocks")   # the legend says it in words
    assert max(line.get_xdata()) > stop
    thin = [ln for ln in ax_l.get_lines() if ln.get_linewidth() < 1 and len(ln.get_xdata()) > 1]
    assert len(thin) == 1 and max(thin[0].get_xdata()) == stop


def test_a_sweep_without_seeds_keeps_its_table_and_draws_curves(tmp_path):
    root, stdout = _sweep(tmp_path, {"model.depth": [1, 2]})
    assert not (root / files.SUMMARY_SEEDS_CSV).exists()
    table = _table(stdout)
    assert "status" in table[2] and "seeds" not in table[2] and SEEDS_NOTE not in stdout
    assert sum(ln.startswith("│") for ln in table) == 2
    assert (root / files.PLOTS / "curves.png").read_bytes()[:8] == PNG
