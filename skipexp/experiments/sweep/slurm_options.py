"""A sweep's Slurm settings: the ``slurm:`` section of a sweep file and the flags that override it, checked
once, and the array script that ``sweep --list --format sbatch`` prints for users who submit by hand.

The section (every key optional)::

    slurm:
      partition: gpu          # sbatch --partition
      time: "2:00:00"         # --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS
      cpus: 4                 # --cpus-per-task (default 1)
      gpus: 1                 # --gpus-per-task
      mem: 8G                 # --mem (a number of MB, or with K, M, G, T)
      sbatch: {account: lab, qos: normal}   # any other sbatch option, without its dashes
"""
from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from skipexp.core.errors import SkipexpError

SECTION_KEYS = ("partition", "time", "cpus", "gpus", "mem", "sbatch")
TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
SIGNAL_LEAD_S = 120   # the array script asks for SIGINT this long before the time limit: time to checkpoint


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time: str | None = None
    cpus: int = 1
    gpus: int | None = None
    mem: str | None = None
    sbatch: dict[str, str] = field(default_factory=dict)

    def merged(self, **flags: Any) -> SlurmOptions:
        """These options with the command line's flags on top (a flag given wins over the section)."""
        extra = dict(self.sbatch)
        for item in flags.pop("sbatch", None) or ():
            k, v = parse_extra(item)
            extra[k] = v
        given = {k: v for k, v in flags.items() if v is not None}
        return check(replace(self, **given, sbatch=extra), "--")

    def minutes(self) -> int | None:
        return None if self.time is None else time_minutes(self.time)

    def directives(self) -> list[str]:
        """The ``#SBATCH`` lines for these options (without --array, --job-name and --output)."""
        out = [f"--cpus-per-task={self.cpus}"]
        out += [f"--{k}={v}" for k, v in (("partition", self.partition), ("time", self.time),
                                          ("gpus-per-task", self.gpus), ("mem", self.mem)) if v is not None]
        out += [f"--{k}" if v == "" else f"--{k}={v}" for k, v in self.sbatch.items()]
        return out


def time_minutes(text: str) -> int:
    """Slurm's time formats in whole minutes (rounded up): 90, 1:30:00, 2-12, ..."""
    m = TIME.match(str(text).strip())
    if not m:
        raise ValueError(text)
    days, a, b, c = m.groups()
    if days is not None:   # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:    # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:    # MM:SS
        seconds = int(a) * 60 + int(b)
    else:                  # minutes
        seconds = int(a) * 60
    return max(1, -(-seconds // 60))


def parse_extra(item: str) -> tuple[str, str]:
    """``account=lab`` (or ``--account=lab``, or a flag alone: ``exclusive``) as (option, value)."""
    k, _, v = str(item).lstrip("-").partition("=")
    if not OPTION.match(k):
        raise SkipexpError(f"expected an sbatch option as KEY=VALUE, like account=lab, got {item!r}", key="--sbatch")
    return k, v


def check(o: SlurmOptions, where: str) -> SlurmOptions:
    """``o`` with every value checked; an error names the flag (``where`` ``--``) or the section's key."""
    def key(name: str) -> str:
        return f"--{name}" if where == "--" else f"{where}{name}"

    if o.time is not None:
        try:
            time_minutes(o.time)
        except ValueError:
            raise SkipexpError(f"expected a Slurm time like 90, 1:30:00 or 2-00:00:00, got {o.time!r}",
                               key=key("time")) from None
    if o.mem is not None and not MEM.match(str(o.mem)):
        raise SkipexpError(f"expected memory like 8G or 16000 (MB), got {o.mem!r}", key=key("mem"))
    for name in ("cpus", "gpus"):
        v = getattr(o, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "cpus" else 0)):
            raise SkipexpError(f"must be a whole number >= {1 if name == 'cpus' else 0}, got {v!r}", key=key(name))
    for k in o.sbatch:
        if not OPTION.match(k):
            raise SkipexpError(f"not an sbatch option name: {k!r}", key=key("sbatch"))
    return o


def from_section(raw: Any, file: str) -> SlurmOptions:
    """The ``slurm:`` section of a sweep file, checked (an empty or missing one: the defaults)."""
    if raw is None:
        return SlurmOptions()
    if not isinstance(raw, dict):
        raise SkipexpError("must be a mapping, e.g. {partition: gpu, time: '1:00:00'}", file=file, key="slurm")
    for k in raw:
        if k not in SECTION_KEYS:
            hint = difflib.get_close_matches(str(k), SECTION_KEYS, n=1)
            raise SkipexpError("unknown key" + (f' (did you mean "{hint[0]}"?)' if hint else "")
                               + f"; the slurm section has {', '.join(SECTION_KEYS)}", file=file, key=f"slurm.{k}")
    extra = raw.get("sbatch") or {}
    if not isinstance(extra, dict):
        raise SkipexpError("must be a mapping of sbatch options to values, e.g. {account: lab}", file=file,
                           key="slurm.sbatch")
    try:
        return check(SlurmOptions(
            partition=None if raw.get("partition") is None else str(raw["partition"]),
            time=None if raw.get("time") is None else str(raw["time"]), cpus=raw.get("cpus", 1),
            gpus=raw.get("gpus"), mem=None if raw.get("mem") is None else str(raw["mem"]),
            sbatch={str(k): "" if v is None or v is True else str(v) for k, v in extra.items()}), "slurm.")
    except SkipexpError as e:
        raise e.with_file(file) from None


def section(o: SlurmOptions) -> dict[str, Any]:
    """The options as a sweep file's ``slurm:`` section (what differs from the defaults)."""
    out: dict[str, Any] = {k: getattr(o, k) for k in ("partition", "time", "gpus", "mem") if getattr(o, k) is not None}
    if o.cpus != 1:
        out["cpus"] = o.cpus
    if o.sbatch:
        out["sbatch"] = dict(o.sbatch)
    return out


def sbatch_script(name: str, commands: list[list[str]], skipexp: str, cwd: str, logs: str, report: str,
                  o: SlurmOptions, jobs: int | None) -> str:
    """A job array with one task per group command: ``sbatch`` it, then ``skipexp report`` the sweep."""
    n = len(commands)
    lines = ["#!/bin/bash", f"# {n} array task{'s' if n != 1 else ''}, one per group of points that train together. "
             "Submit with: sbatch THIS_FILE", f"# When the array has ended: {report}",
             "# Each task skips finished points and resumes interrupted ones, so submitting again finishes a sweep.",
             f"#SBATCH --job-name=skipexp-{name}", f"#SBATCH --array=1-{n}" + (f"%{jobs}" if jobs else ""),
             f"#SBATCH --output={logs}/%A_%a.out",
             # the time limit: SIGINT to the command (exec'd below) first, so its points checkpoint
             f"#SBATCH --signal=B:INT@{SIGNAL_LEAD_S}"]
    lines += [f"#SBATCH {d}" for d in o.directives()]
    lines += ["", f"SKIPEXP=${{SKIPEXP:-{shlex.quote(skipexp)}}}", f"cd {shlex.quote(cwd)} || exit 1",
              'case "$SLURM_ARRAY_TASK_ID" in']
    for i, argv in enumerate(commands, 1):
        lines.append(f'  {i}) exec "$SKIPEXP" {" ".join(shlex.quote(a) for a in argv[1:])} ;;')
    lines += ['  *) echo "no group for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac"]
    return "\n".join(lines)
