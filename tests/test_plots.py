"""Plots are drawn from a run folder alone, including a diverged one full of NaN and inf."""
from __future__ import annotations

import math

import pytest

from skipexp.core import config
from skipexp.views import plots
from skipexp.rundir import runio


def fake_run(tmp_path, diverge: bool):
    run = tmp_path / ("diverged" if diverge else "ok")
    run.mkdir()
    (run / "config.yaml").write_text(config.dump(config.from_dict({"model": {"depth": 3, "width": 4}})))
    runio.write_json(run / "meta.json", {"tool": "skipexp", "name": run.name, "status": "diverged" if diverge
                                         else "completed", **({"diverged_at_step": 30} if diverge else {})})
    layers, bounds = ["input", "blocks.0.fc1", "blocks.0.fc2", "head"], ["h0", "h1", "h2", "h3"]
    logs = {"metrics": runio.CsvLog(run / "metrics.csv", runio.METRICS_COLUMNS),
            "eval": runio.CsvLog(run / "eval.csv", runio.EVAL_COLUMNS),
            "grad": runio.CsvLog(run / "grad_norms.csv", ["step"] + layers),
            "act_grad": runio.CsvLog(run / "act_grad_norms.csv", ["step"] + bounds),
            "act": runio.CsvLog(run / "act_norms.csv", ["step"] + bounds)}
    for step in range(1, 31):
        bad = diverge and step >= 29
        loss = (math.nan if step == 30 else math.inf) if bad else 2.3 * 0.9 ** step
        logs["metrics"].write([step, 0, loss, 0.1 + step / 40, 0.05, 1.0, step * 0.1])
        logs["grad"].write([step] + [math.inf if bad else 10.0 ** -(3 - i) for i in range(4)])
        logs["act_grad"].write([step] + [0.0 if bad else 10.0 ** -(3 - i) for i in range(4)])
        logs["act"].write([step] + [1.0] * 4)
        if step % 10 == 0:
            logs["eval"].write([step, 0, loss, 0.2 + step / 50])
    for log in logs.values():
        log.close()
    return run


@pytest.mark.parametrize("diverge", [False, True])
def test_plot_run_writes_three_pngs(tmp_path, diverge):
    run = fake_run(tmp_path, diverge)
    paths = plots.plot_run(run)
    assert [p.name for p in paths] == ["loss.png", "grad_norms.png", "grad_heatmap.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_depth_ticks_are_evenly_spaced_and_end_at_the_last():
    for n in (1, 2, 5, 12, 13, 21, 42, 65, 129):
        ticks = plots._ticks(n)
        assert ticks[0] == 0 and ticks[-1] == n - 1 and len(ticks) <= 13
        gaps = {b - a for a, b in zip(ticks[:-2], ticks[1:-1])}
        assert len(gaps) <= 1, (n, ticks)  # even, except possibly the last gap
