"""Whether a run folder's CSVs hold what its meta.json says the run did, before anything is rebuilt from them.

A summary, a table or a plot rebuilt from a damaged CSV (cut short by a full disk, a bad copy, an edit)
looks like a result and is not one. :func:`check_rows` reads each step-keyed CSV against meta.json and
config.yaml and raises a :class:`SkipexpError` naming the file and what is missing or wrong:

* every file: rows of numbers with strictly increasing steps, each a step the run logs (``log.every``,
  step 1 and the last step; ``eval.csv``: each evaluation step), none skipped up to the file's last row;
* a run that ended with a result (completed, diverged): every file whole (no cut-off last line), the four
  per-log-step files holding the same steps, reaching the last step it logged: a completed run's last
  step, a diverged run's last log step before it stopped.

A run that is running, crashed, failed or interrupted may end mid-row or with its files one log step
apart (its process died writing them); only the order and the gaps are checked there.
"""
from __future__ import annotations

from pathlib import Path

from skipexp.core.errors import SkipexpError
from skipexp.rundir import files, runio

LOG_FILES = (files.METRICS, files.GRAD_NORMS, files.ACT_GRAD_NORMS, files.ACT_NORMS)
LEFT_ALONE = "summary.json is left as it was"


def _steps(path: Path) -> tuple[list[int], bool]:
    """The steps of a CSV's whole rows, and whether its last line is cut off; a row that is no row of numbers
    is an error."""
    data = path.read_bytes()
    cut = bool(data) and not data.endswith(b"\n")
    lines = data.split(b"\n")[1:]
    if cut:
        lines = lines[:-1]
    steps = []
    for n, line in enumerate((x for x in lines if x), start=2):
        try:
            values = [float(v) if v else 0.0 for v in line.decode().split(",")]
            steps.append(int(values[0]))
        except (ValueError, UnicodeDecodeError, IndexError):
            raise SkipexpError(f"line {n} is not a row of numbers; {LEFT_ALONE}", file=str(path)) from None
    return steps, cut


def _expected(name: str, total: int, per_epoch: int, log: dict) -> list[int]:
    """The steps at which a run of ``total`` steps writes a row to ``name`` (as the training loop does)."""
    if name == files.EVAL:
        every = log.get("eval_every") or per_epoch
        return [s for s in range(every, total + 1, every)] + ([total] if total % every else [])
    every = int(log.get("every") or 1)
    return sorted({1, *range(every, total + 1, every), total})


def check_rows(run_dir: Path) -> None:
    """Raise a SkipexpError naming the first CSV of ``run_dir`` that does not hold what meta.json says the run
    did (see the module docstring); return quietly where every one does."""
    meta = files.read_json(run_dir / files.META)
    status = runio.effective_status(meta)
    ended = status in files.FINISHED
    try:
        log = files.read_config_dict(run_dir).get("log") or {}
    except Exception:   # an unreadable config: nothing to hold the rows against but their order
        log = {}
    total, per_epoch = meta.get("total_steps"), meta.get("steps_per_epoch")
    known = isinstance(total, int) and isinstance(per_epoch, int) and isinstance(log, dict)
    diverged_at = meta.get("diverged_at_step")
    log_steps: dict[str, list[int]] = {}
    for name in (*LOG_FILES, files.EVAL):
        path = run_dir / name
        if not path.is_file():
            if ended:
                raise SkipexpError(f"missing, but meta.json says the run {status}; {LEFT_ALONE}", file=str(path))
            continue
        steps, cut = _steps(path)
        for before, after in zip(steps, steps[1:]):
            if after <= before:
                raise SkipexpError(f"step {after} comes after step {before}: rows repeated or out of order; "
                                   f"{LEFT_ALONE}", file=str(path))
        if not known:
            if ended and cut:
                raise SkipexpError(f"its last line is cut off, but meta.json says the run {status}; {LEFT_ALONE}",
                                   file=str(path))
            continue
        expected = _expected(name, total, per_epoch, log)
        for got, want in zip(steps, expected):
            if got != want:
                raise SkipexpError(f"has no row for step {want} (the next row is step {got}); {LEFT_ALONE}",
                                   file=str(path))
        if len(steps) > len(expected):
            raise SkipexpError(f"has a row for step {steps[len(expected)]}, past the run's {total} steps; "
                               f"{LEFT_ALONE}", file=str(path))
        # where a finished run's rows must reach: its last step, or the last row before it diverged
        if status == "completed":
            must = [s for s in expected if s <= total]
        elif status == "diverged" and isinstance(diverged_at, int):
            must = [s for s in expected if s < diverged_at or (s == diverged_at and name != files.EVAL)]
        else:
            must = []
        if must and len(steps) < len(must):
            last = f"step {steps[-1]}" if steps else "no row at all"
            gone = (f"the row of step {must[-1]} is missing" if len(steps) + 1 == len(must) else
                    f"the rows from step {must[len(steps)]} to step {must[-1]} are missing")
            raise SkipexpError(f"ends at {last}, but meta.json says the run {status} after "
                               f"{diverged_at if status == 'diverged' else total} steps: {gone}; {LEFT_ALONE}",
                               file=str(path))
        if ended and cut:
            raise SkipexpError(f"its last line is cut off, but meta.json says the run {status}; {LEFT_ALONE}",
                               file=str(path))
        if name in LOG_FILES:
            log_steps[name] = steps
    if ended and log_steps:
        first, *rest = log_steps.items()
        for name, steps in rest:
            if steps != first[1]:
                raise SkipexpError(f"holds other steps than {first[0]} ({len(steps)} rows against "
                                   f"{len(first[1])}); {LEFT_ALONE}", file=str(run_dir / name))
