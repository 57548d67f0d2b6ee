"""summary.json of a run, computed from its CSVs alone, so that report can rebuild it any time."""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from skipexp.rundir import files, runio
from skipexp.rundir.integrity import check_rows

# What "final" and "best" mean, quoted by the README and the comparison table's footnote.
FINAL_BEST = ("train, test and validation: final = the last evaluation (train: on the training split, or a "
              "fixed sample of log.train_eval_size examples of it, in eval mode), best = the best evaluation; "
              "batch (and train, for a run that evaluates no training data): final = mean over the last tenth of "
              "the logged training batches, best = the lowest loss (highest accuracy) of such a mean anywhere in "
              "the run. So best is never worse than final.")

# What "steps" and "steps/s" mean: the steps taken (updates applied), over the training clock.
STEPS = ("steps = optimizer steps taken (a diverged run stops before its bad step's update); steps/s = steps "
         "over the run's training seconds (every process that trained it, without start-up)")

TRAIN_WINDOW_FRACTION = 10  # the final / best train window is a tenth of the logged rows (at least one)

# A process that wrote these statuses recorded ``steps_done`` as it ended; a crashed one did not.
_ENDED_CLEANLY = ("completed", "diverged", "interrupted", "failed")


def ema(values: list[float], alpha: float = 0.1) -> list[float]:
    """Exponential moving average without start-up bias (TensorBoard's "debiased" smoothing).

    Point k is the average of the finite values so far weighted by (1 - alpha)^age, divided by the
    sum of those weights: the first point is the first value, not a mix of it with a zero or with
    itself. A non-finite value is left out of the average and shows as nan at its own position.
    """
    out, num, den = [], 0.0, 0.0
    for v in values:
        if math.isfinite(v):
            num = (1 - alpha) * num + alpha * v
            den = (1 - alpha) * den + alpha
            out.append(num / den)
        else:
            out.append(float("nan"))
    return out


def smooth(values: list[float]) -> list[float]:
    """The smoothed curve the plots draw: a debiased EMA over a twentieth of the logged rows, at least three
    (so a short run is barely smoothed and a long one is smoothed over the same share of its length)."""
    span = max(3.0, len(values) / 20)
    return ema(values, 2 / (span + 1))


def _window_means(values: list[float], width: int) -> list[float]:
    """Mean of the finite values in every run of ``width`` consecutive values (nan where none is finite),
    from prefix sums: one pass however wide the window, exact to rounding (enough to find the best one)."""
    sums, counts = [0.0], [0]
    for v in values:
        ok = math.isfinite(v)
        sums.append(sums[-1] + (v if ok else 0.0))
        counts.append(counts[-1] + ok)
    out = []
    for end in range(width, len(values) + 1):
        n = counts[end] - counts[end - width]
        out.append((sums[end] - sums[end - width]) / n if n else float("nan"))
    return out


def _mean_finite(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return math.fsum(finite) / len(finite) if finite else float("nan")


def final_and_best(values: list[float], lower_is_better: bool) -> tuple[float, float | None]:
    """(final, best) of logged training values, as :data:`FINAL_BEST` says: the last window's mean and the
    best window's mean, the windows being a tenth of the rows. The last window is one of those compared,
    so best is never worse than final."""
    width = max(1, len(values) // TRAIN_WINDOW_FRACTION)
    final = _mean_finite(values[-width:])
    found = [(m, end) for end, m in enumerate(_window_means(values, width), start=width) if math.isfinite(m)]
    if not found:
        return final, None
    pick = min if lower_is_better else max
    best = _mean_finite(values[pick(found)[1] - width:pick(found)[1]])
    # the last window was a candidate: where rounding picked a tie, keep the invariant exact
    return final, (pick(best, final) if math.isfinite(final) else best)


def steps_taken(meta: dict, metrics: list[dict]) -> int:
    """Optimizer steps taken: meta.json's ``steps_done`` where the process recorded it as it ended,
    else (a crashed or still running process) the last logged step."""
    logged = int(metrics[-1]["step"]) if metrics else 0
    if meta.get("status") in _ENDED_CLEANLY and isinstance(meta.get("steps_done"), int):
        return meta["steps_done"]
    return max(logged, meta.get("steps_done") or 0)


def steps_per_second(steps: float, seconds: float | None) -> float | None:
    """The one steps/s figure (see :data:`STEPS`): steps over training seconds, None without a clock."""
    return steps / seconds if seconds else None


def _ratio(row: dict, first: str, last: str) -> float | None:
    if not row or first not in row or last not in row:
        return None
    a, b = row[first], row[last]
    return a / b if b not in (0.0,) and math.isfinite(a) and math.isfinite(b) else None


def _evaluated(evals: list[dict], split: str) -> dict:
    """final (the last evaluation) and best (the best one) loss and accuracy of one evaluated split."""
    losses = [r[f"{split}_loss"] for r in evals if math.isfinite(r[f"{split}_loss"])]
    accs = [r[f"{split}_acc"] for r in evals if math.isfinite(r[f"{split}_acc"])]
    return {f"final_{split}_loss": evals[-1][f"{split}_loss"], f"final_{split}_acc": evals[-1][f"{split}_acc"],
            f"best_{split}_loss": min(losses) if losses else None, f"best_{split}_acc": max(accs) if accs else None}


def summarize(run_dir: Path) -> dict:
    """summary.json's contents, from the run's meta.json and CSVs on disk."""
    meta = files.read_json(run_dir / files.META) if (run_dir / files.META).exists() else {}
    return summarize_rows(meta, runio.read_csv(run_dir / files.METRICS), runio.read_csv(run_dir / files.EVAL),
                          runio.read_csv(run_dir / files.GRAD_NORMS), runio.read_csv(run_dir / files.ACT_GRAD_NORMS),
                          name=run_dir.name)


def summarize_rows(meta: dict, metrics: list[dict], evals: list[dict], grads: list[dict], acts: list[dict],
                   name: str) -> dict:
    """summary.json's contents from meta.json and the rows of metrics.csv, eval.csv, grad_norms.csv and
    act_grad_norms.csv (of the last two only the first and the last row count), as the CSVs read back;
    ``name``: the run's where meta.json names none."""
    s: dict = {"name": meta.get("name", name), "status": runio.effective_status(meta) if meta else "unknown"}
    if meta.get("diverged_at_step") is not None:
        s["diverged_at_step"] = meta["diverged_at_step"]
    s["steps"] = steps_taken({**meta, "status": s["status"]}, metrics)
    s["wall_s"] = meta.get("train_seconds")
    s["steps_per_s"] = steps_per_second(s["steps"], s["wall_s"])
    s["params"] = meta.get("params")
    if metrics:
        s["final_batch_loss"], s["best_batch_loss"] = final_and_best([r["train_loss"] for r in metrics], True)
        s["final_batch_acc"], s["best_batch_acc"] = final_and_best([r["train_acc"] for r in metrics], False)
    # train: evaluated on the training data where the run did (eval.csv), else the logged batches' window
    s["train_from"] = "batches" if metrics else None
    for field in ("final_train_loss", "best_train_loss", "final_train_acc", "best_train_acc"):
        if metrics:
            s[field] = s[field.replace("train", "batch")]
    for split in ("test", "val", "train"):
        if evals and f"{split}_loss" in evals[0]:
            s.update(_evaluated(evals, split))
            if split == "train":
                s["train_from"] = "evaluation"
    if grads:
        cols = [c for c in grads[0] if c != "step"]
        s["grad_ratio_first_last_start"] = _ratio(grads[0], cols[0], cols[-1])
        s["grad_ratio_first_last_end"] = _ratio(grads[-1], cols[0], cols[-1])
    if acts:
        cols = [c for c in acts[0] if c != "step"]
        s["act_grad_ratio_first_last_start"] = _ratio(acts[0], cols[0], cols[-1])
        s["act_grad_ratio_first_last_end"] = _ratio(acts[-1], cols[0], cols[-1])
    return s


def write_summary(run_dir: Path, check: bool = True) -> dict:
    """Rebuild summary.json from the CSVs. With ``check`` (every reader's rebuild), first
    :func:`~skipexp.rundir.integrity.check_rows`: CSVs that do not hold what meta.json says leave summary.json
    as it was and raise a SkipexpError naming the file. The training process that just closed them skips it."""
    if check:
        check_rows(run_dir)
    s = summarize(run_dir)
    files.write_json(run_dir / files.SUMMARY, s)
    return s


# --- over seeds ------------------------------------------------------------------------------------

def numbers(summaries: list[dict], field: str) -> list[float]:
    """The values of ``field`` that are numbers (nan included, booleans and missing ones not), in order."""
    return [float(x[field]) for x in summaries
            if isinstance(x.get(field), (int, float)) and not isinstance(x[field], bool)]


def describe(values: list[float]) -> dict[str, float | None]:
    """Mean, sample standard deviation (n - 1; None with one value), min and max of a non-empty list.

    A nan among the values makes the mean and the sd nan (an inf the sd): a caller that wants them left out
    filters first.
    """
    if all(math.isfinite(v) for v in values):
        mean, std = math.fsum(values) / len(values), statistics.stdev(values) if len(values) > 1 else None
    else:  # statistics refuses non-finite values; a plain sum gives the nan (or inf) they imply
        mean, std = sum(values) / len(values), float("nan") if len(values) > 1 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}
