"""The console, the progress bars, signals and exit codes: everything of the CLI that a user sees happen."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from skipexp.rundir.folder import RunFolder

# A pipe or a file has no width: rich would assume 80 columns and cut table cells to `complet…`. Lines
# that long are what a log or `| less -S` wants; a terminal (or COLUMNS) still sets the width.
UNBOUNDED_WIDTH = 100_000


class LazyConsole:
    """A rich Console made on first use, since importing rich.console costs ~0.1 s that --help need not pay.

    Off a terminal, with no COLUMNS set, it is as wide as its widest line, so piped tables come out whole.
    """

    def __init__(self, **kwargs: object) -> None:
        self._kwargs = kwargs
        self._console = None

    @property
    def console(self):
        if self._console is None:
            from rich.console import Console

            console = Console(**self._kwargs)
            if not console.is_terminal and not os.environ.get("COLUMNS"):
                console.width = UNBOUNDED_WIDTH
            self._console = console
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)


out_console = LazyConsole()
err_console = LazyConsole(stderr=True)


def reset_consoles() -> None:
    """Make the consoles afresh on next use: a console reads its stream, NO_COLOR and COLUMNS once, and
    ``main`` may be called more than once in a process (a notebook, tests)."""
    out_console._console = err_console._console = None

EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


def error(message: str) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


# --- signals: the first Ctrl-C stops after the current step, the second at once -------------------

_replaced: list[tuple[int, object]] = []  # (signal, the handler a StopFlag replaced), oldest first


def restore_signals() -> None:
    """Put back the handlers StopFlags replaced, so a command run in-process leaves the process as it was."""
    while _replaced:
        sig, handler = _replaced.pop()
        signal.signal(sig, handler)


class StopFlag:
    def __init__(self) -> None:
        self.requested = False
        self.run_dirs: list[Path] = []   # the folders being trained now: a second Ctrl-C marks them all
        self.pending: list[Path] = []    # folders the command has yet to finish (resume's): named too

    def __call__(self) -> bool:
        return self.requested

    def install(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            _replaced.append((sig, signal.signal(sig, self._handle)))
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if not self.requested:
            self.requested = True
            err_console.print("[yellow]stopping after this step (again to quit at once)...[/]")
            return
        self.quit_now()

    def stop_with_parent(self, parent_env: str) -> StopFlag:
        """In a sweep's worker (``parent_env`` names the pid of the sweep that started it): stop as on the
        first Ctrl-C (the step, a checkpoint, ``interrupted``) when that process dies, however it died, so that
        no worker of a killed sweep trains on as an orphan in its own session.

        On Linux the kernel sends SIGHUP (PR_SET_PDEATHSIG, on the end of the thread that started this
        process, which in the sweep waits for its children); elsewhere a thread watches the parent pid.
        SIGHUP only ever asks for the graceful stop, however often it comes (a second SIGINT or SIGTERM
        quits at once)."""
        value = os.environ.pop(parent_env, None)   # not handed down to anything this process starts
        if not value or not value.isdigit():
            return self
        parent = int(value)

        def parent_gone(signum: int, frame: object) -> None:
            if not self.requested:
                self.requested = True
                err_console.print("[yellow]the sweep that started this process is gone: stopping after this "
                                  "step...[/]")

        if sys.platform.startswith("linux"):
            _replaced.append((signal.SIGHUP, signal.signal(signal.SIGHUP, parent_gone)))
            try:
                import ctypes

                PR_SET_PDEATHSIG = 1
                if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGHUP), 0, 0, 0) == 0:
                    if os.getppid() != parent:   # it died before the request was made
                        parent_gone(signal.SIGHUP, None)
                    return self
            except (OSError, AttributeError):
                pass
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            parent_gone(0, None)

        threading.Thread(target=watch, name="skipexp-parent-watch", daemon=True).start()
        return self

    def quit_now(self) -> None:
        # every file in a run folder is written atomically or row by row, so leaving now corrupts nothing;
        # last.pt is the one from the last epoch end, and resume rolls the rows after it back
        marked = []
        for run_dir in self.run_dirs:
            try:
                if RunFolder(run_dir).mark_interrupted():  # a finished run keeps its status
                    marked.append(run_dir)
            except Exception:
                pass
        named = marked + [d for d in self.pending if d not in marked]
        if named:
            sys.stderr.write(resume_hint(named) + "\n")
            sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def resume_hint(run_dirs: list[Path]) -> str:
    """The one line that says how to go on: one command that resumes every folder interrupted."""
    import shlex

    return "interrupted; continue with: skipexp resume " + " ".join(shlex.quote(str(d)) for d in run_dirs)


# --- progress ------------------------------------------------------------------------------------

def run_name(run_dir: Path) -> str:
    """The name a run was trained under (its bar's label), or its folder's where config.yaml is unreadable
    (resume then refuses the folder with its own message)."""
    from skipexp.rundir import files

    try:
        return str(files.read_config_dict(run_dir).get("name") or run_dir.name)
    except Exception:
        return run_dir.name


def reporter_for(stop: StopFlag | None = None):
    """label -> a progress-bar reporter, as the library asks for one."""
    return lambda label: make_reporter(label, stop)


def make_reporter(label: str, stop: StopFlag | None = None, members: list[str] | None = None):
    """A progress bar for one training (K >= 1 models together). With ``members`` (one name per model, as
    compare's groups give them) its loss field shows each member's own: the mean over that member's models
    (its seeds) at the last log step; without, the first model's."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from skipexp.training.run import Reporter

    class RichReporter(Reporter):
        def __init__(self) -> None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} steps/s"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                console=err_console.console, transient=False,
            )
            self.task = None
            self.started = False  # a bar that never started must not print its blank line on close

        def on_runs(self, runs):
            if stop is not None:
                stop.run_dirs = [run_dir for _, run_dir in runs]

        def on_start(self, run_dir, total_steps, start_step):
            if stop is not None and not stop.run_dirs:
                stop.run_dirs = [run_dir]
            self.progress.start()
            self.started = True
            self.task = self.progress.add_task(label, total=total_steps, completed=start_step, loss="-", rate="-")

        def on_log(self, row):
            from skipexp.rundir.summary import steps_per_second

            # the run's average so far, on the clock summary.json's steps/s uses, so the bar ends on its figure
            step, per_s = int(row["step"]), steps_per_second(int(row["step"]), row["elapsed_s"])
            rate = "-" if per_s is None else f"{per_s:.0f}"
            self.progress.update(self.task, completed=step, loss=f"{row['train_loss']:.4f}", rate=rate)

        def on_logs(self, rows):
            if not rows:
                return
            self.on_log(rows[min(rows)])
            if members:   # each member's own loss, not the first model's for all
                losses: dict[str, list[float]] = {}
                for k, row in sorted(rows.items()):
                    losses.setdefault(members[k], []).append(row["train_loss"])
                shown = "  ".join(f"{m} {sum(v) / len(v):.4f}" for m, v in losses.items())
                self.progress.update(self.task, loss=shown)

        def on_eval(self, row):
            self.progress.update(self.task, completed=int(row["step"]))

        def on_end(self, status, summary):
            self.close()

        def close(self):
            if self.started:
                self.progress.stop()
                self.started = False

    return RichReporter()


def download_progress():
    """A progress callback for dataset downloads, drawn on stderr."""
    state: dict = {}

    def progress(done: int, total: int | None, name: str) -> None:
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        if "p" not in state:
            state["p"] = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                                  console=err_console.console, transient=True)
            state["p"].start()
        p = state["p"]
        if name not in state:
            state[name] = p.add_task(f"download {name}", total=total)
        p.update(state[name], completed=done)
        if total is not None and done >= total:
            p.update(state[name], visible=False)

    return progress


