"""summary.json of a run, computed from its CSVs alone, so that report can rebuild it any time."""
from __future__ import annotations

import math
from pathlib import Path

from skipexp.rundir import runio


def ema(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average that skips non-finite values (they would poison every later point)."""
    out, acc = [], None
    for v in values:
        if math.isfinite(v):
            acc = v if acc is None else (1 - alpha) * acc + alpha * v
        out.append(acc if acc is not None else float("nan"))
    return out


def _ratio(row: dict, first: str, last: str) -> float | None:
    if not row or first not in row or last not in row:
        return None
    a, b = row[first], row[last]
    return a / b if b not in (0.0,) and math.isfinite(a) and math.isfinite(b) else None


def summarize(run_dir: Path) -> dict:
    meta = runio.read_json(run_dir / "meta.json") if (run_dir / "meta.json").exists() else {}
    metrics = runio.read_csv(run_dir / "metrics.csv")
    evals = runio.read_csv(run_dir / "eval.csv")
    grads = runio.read_csv(run_dir / "grad_norms.csv")
    acts = runio.read_csv(run_dir / "act_grad_norms.csv")
    s: dict = {"name": meta.get("name", run_dir.name), "status": runio.effective_status(meta) if meta else "unknown"}
    if meta.get("diverged_at_step") is not None:
        s["diverged_at_step"] = meta["diverged_at_step"]
    s["steps"] = int(metrics[-1]["step"]) if metrics else 0
    s["wall_s"] = meta.get("train_seconds")
    s["steps_per_s"] = (s["steps"] / s["wall_s"]) if s["wall_s"] else None
    if metrics:
        losses = [r["train_loss"] for r in metrics]
        accs = [r["train_acc"] for r in metrics]
        tail = max(1, len(metrics) // 10)  # final = mean of the last tenth of logged batches
        finite_tail = [v for v in losses[-tail:] if math.isfinite(v)]
        s["final_train_loss"] = sum(finite_tail) / len(finite_tail) if finite_tail else float("nan")
        s["final_train_acc"] = sum(accs[-tail:]) / tail
        smooth_loss, smooth_acc = ema(losses), ema(accs)
        finite = [v for v in smooth_loss if math.isfinite(v)]
        s["best_train_loss"] = min(finite) if finite else None
        s["best_train_acc"] = max(v for v in smooth_acc if math.isfinite(v)) if finite else None
    if evals:
        s["final_test_loss"] = evals[-1]["test_loss"]
        s["final_test_acc"] = evals[-1]["test_acc"]
        finite = [r["test_loss"] for r in evals if math.isfinite(r["test_loss"])]
        s["best_test_loss"] = min(finite) if finite else None
        s["best_test_acc"] = max(r["test_acc"] for r in evals)
    if grads:
        cols = [c for c in grads[0] if c != "step"]
        s["grad_ratio_first_last_start"] = _ratio(grads[0], cols[0], cols[-1])
        s["grad_ratio_first_last_end"] = _ratio(grads[-1], cols[0], cols[-1])
    if acts:
        cols = [c for c in acts[0] if c != "step"]
        s["act_grad_ratio_first_last_start"] = _ratio(acts[0], cols[0], cols[-1])
        s["act_grad_ratio_first_last_end"] = _ratio(acts[-1], cols[0], cols[-1])
    return s


def write_summary(run_dir: Path) -> dict:
    s = summarize(run_dir)
    runio.write_json(run_dir / "summary.json", s)
    return s
