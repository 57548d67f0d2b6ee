"""A sweep's points in groups that train together, and running one group in this process.

Points whose configs :func:`skipexp.training.stackable.group_configs` puts together (one model shape,
differing only in per-model values: seed, lr, momentum, init, ..., and skip kind none beside identity)
form a :class:`Group`. Groups are numbered from 1 in the order of their first point, a pure function of
the grid, so ``skipexp sweep SWEEP --group N`` names the same points every time, whatever is done already.

A group bigger than the others may be cut into parts (:func:`spread`) so that ``--jobs`` workers all have
work: ``--group N --part i/k`` is the i-th of k contiguous slices of group N's points. A part, like its
group, is cut from all the group's points, never from the ones left to do, so a part's command means the
same points while another part's points finish.

:func:`run_group` settles each point's folder as ``train --run-dir DIR --resume`` would
(:mod:`skipexp.rundir.reuse`): a done point is kept, an interrupted one resumed alone (it starts
mid-run), a point running elsewhere left alone, and the new and stale ones trained together in one stack
by :func:`skipexp.training.fit.train_group`, each into its ordinary run folder.
"""
from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skipexp.core.errors import SkipexpError
from skipexp.rundir.reuse import folder_state, read_status, reuse_or_move_aside

if TYPE_CHECKING:   # spec builds its commands from groups
    from skipexp.experiments.sweep.spec import Point


@dataclass(frozen=True)
class Group:
    number: int                     # from 1, in the order of the groups' first points
    points: list[Point]             # its points (or a part's), in grid order
    part: tuple[int, int] = (1, 1)  # (i, k): the i-th of k parts; (1, 1) is the whole group
    argv: list[str] = field(default_factory=list)  # the command that runs it: skipexp sweep FILE --group N [--part i/k]

    @property
    def title(self) -> str:
        """``group 3``, or ``group 3 part 1/2``."""
        return f"group {self.number}" + (f" part {self.part[0]}/{self.part[1]}" if self.part[1] > 1 else "")

    @property
    def label(self) -> str:
        """``group 3: depth=8,skip.kind=none,seed=0 … (6 points)``."""
        n = len(self.points)
        more = " …" if n > 1 else ""
        return f"{self.title}: {self.points[0].name}{more} ({n} point{'s' if n != 1 else ''})"

    @property
    def run_dirs(self) -> list[Path]:
        return [p.run_dir for p in self.points]

    def only(self, names: set[str]) -> Group:
        """The same group (same command) with only the points named: what is left to do of it."""
        return replace(self, points=[p for p in self.points if p.name in names])


def groups(pts: list[Point]) -> list[Group]:
    """The points in groups that can train together, numbered from 1 (see the module docstring)."""
    from skipexp.training.stackable import group_configs

    return [Group(n, [pts[i] for i in idx]) for n, idx in enumerate(group_configs([p.cfg for p in pts]), 1)]


def parts(group: Group, k: int) -> list[Group]:
    """``group`` cut into ``k`` contiguous parts whose sizes differ by at most one (fewer if it is small)."""
    k = max(1, min(k, len(group.points)))
    size, extra = divmod(len(group.points), k)
    out, at = [], 0
    for i in range(k):
        n = size + (i < extra)
        out.append(replace(group, points=group.points[at:at + n], part=(i + 1, k)))
        at += n
    return out


def spread(gs: list[Group], jobs: int) -> list[Group]:
    """Groups, with the biggest cut into parts while there are fewer of them than ``jobs`` workers.

    A stack of K models costs about K times one model's step on a CPU at these widths, so two parts on
    two cores finish in about half the time of the whole group on one (measured: README, Sweeps).
    """
    cuts = {g.number: 1 for g in gs}
    while gs and sum(cuts.values()) < jobs:
        biggest = max(gs, key=lambda g: (len(g.points) / cuts[g.number], -g.number))
        if len(biggest.points) < cuts[biggest.number] + 1:
            break   # every part is down to one point
        cuts[biggest.number] += 1
    return [p for g in gs for p in parts(g, cuts[g.number])]


def work(g: Group) -> float:
    """About how long a group trains, in no unit: per point, its steps (or epochs) x batch x the squared width
    of every block (a block's matmuls, or convs at the sweep's one image size). Groups start longest first,
    so that the last to end is a short one instead of the deepest net, started last."""
    total = 0.0
    for p in g.points:
        if p.cfg is not None:
            t = p.cfg.train
            total += (t.steps or t.epochs) * t.batch_size * sum(w * w for w in p.cfg.model.widths())
    return total


def select(pts: list[Point], number: int, part: tuple[int, int] = (1, 1)) -> Group:
    """Group ``number`` of the points, or its part ``part`` (i, k); a clear error where there is none."""
    gs = groups(pts)
    if not 1 <= number <= len(gs):
        raise SkipexpError(f"the sweep has {len(gs)} group(s) (1-{len(gs)}), no group {number}", key="--group")
    i, k = part
    if not 1 <= i <= k:
        raise SkipexpError(f"must be i/k with 1 <= i <= k, got {i}/{k}", key="--part")
    cut = parts(gs[number - 1], k)
    if i > len(cut):
        raise SkipexpError(f"group {number} has {len(gs[number - 1].points)} point(s): no part {i}/{k}",
                           key="--part")
    return cut[i - 1]


def parse_part(text: str) -> tuple[int, int]:
    """``"2/3"`` -> (2, 3)."""
    try:
        i, k = (int(x) for x in text.split("/"))
    except ValueError:
        raise SkipexpError(f"must be i/k, e.g. 1/2, got {text!r}", key="--part") from None
    if not 1 <= i <= k:
        raise SkipexpError(f"must be i/k with 1 <= i <= k, got {text}", key="--part")
    return i, k


def with_argv(group: Group, sweep_file: str, out: str | None) -> Group:
    """``group`` with its command: ``skipexp sweep SWEEP_FILE --group N [--part i/k] [--out OUT]``."""
    argv = ["skipexp", "sweep", sweep_file, "--group", str(group.number)]
    if group.part[1] > 1:
        argv += ["--part", f"{group.part[0]}/{group.part[1]}"]
    if out is not None:
        argv += ["--out", out]
    return replace(group, argv=argv)


def shell_line(group: Group) -> str:
    return " ".join(shlex.quote(a) for a in group.argv)


def run_group(group: Group, *, reporter_for: Callable[[str], Any] | None = None,
              should_stop: Callable[[], bool] = lambda: False, progress: Any = None, plots: bool = True,
              notify: Callable[[str], None] = lambda message: None) -> list[tuple[Point, str]]:
    """Settle and train the points of ``group`` here, in this process; each point's status afterwards.

    ``reporter_for(label)`` gives a progress bar's reporter: one for the points trained together (labelled
    with the group), one per point resumed alone. ``notify`` hears a line per point not trained here.
    Stops starting anything once a training was interrupted or ``should_stop()`` is true.
    """
    from skipexp.training import fit  # torch: only for a group trained here, not for a listing
    from skipexp.views.run_views import RunViews

    fresh: list[Point] = []
    for p in group.points:
        state = folder_state(p.run_dir)
        if state == "running":
            notify(f"{p.run_dir}: running in another process; left alone")
        elif state in ("done", "resume"):
            if should_stop():
                break
            # alone: a done point only has its summary rewritten; an interrupted one starts mid-run
            with _reporter(reporter_for, p.cfg.name) as reporter:
                result = fit.train_or_resume(p.cfg, p.run_dir, reporter=reporter, should_stop=should_stop,
                                             progress=progress, views=RunViews(), notify=notify)
            if result.status == "interrupted":
                return _statuses(group)
        else:
            fresh.append(p)
    if fresh and not should_stop():
        _train_together(group, fresh, reporter_for, should_stop, progress, plots, notify)
    return _statuses(group)


def _train_together(group: Group, fresh: list[Point], reporter_for: Callable[[str], Any] | None,
                    should_stop: Callable[[], bool], progress: Any, plots: bool,
                    notify: Callable[[str], None]) -> None:
    from skipexp.training import fit
    from skipexp.views.run_views import RunViews

    dirs = []
    for p in fresh:
        _, moved = reuse_or_move_aside(p.run_dir, p.cfg)   # a stale folder (nothing to resume) moves aside
        if moved is not None:
            notify(f"{p.run_dir}: nothing to resume there; moved it to {moved.name} and training afresh")
        dirs.append(fit.create_run(p.cfg, p.run_dir.parent, p.run_dir))
    label = group.label if len(fresh) == len(group.points) else replace(group, points=fresh).label
    with _reporter(reporter_for, label) as reporter:
        fit.fit([p.cfg for p in fresh], dirs, reporter=reporter, should_stop=should_stop, progress=progress,
                views=RunViews(plots))


@contextmanager
def _reporter(reporter_for: Callable[[str], Any] | None, label: str) -> Iterator[Any]:
    """The reporter ``reporter_for`` gives for ``label`` (None without one), closed after."""
    reporter = reporter_for(label) if reporter_for else None
    try:
        yield reporter
    finally:
        if reporter is not None and hasattr(reporter, "close"):
            reporter.close()


def _statuses(group: Group) -> list[tuple[Point, str]]:
    return [(p, read_status(p.run_dir)) for p in group.points]

