"""Sweeps: a grid of overrides over a base config, one run folder per point, run by a pluggable backend.

- :mod:`.spec`: the sweep file, its points and their folder names
- :mod:`.commands`: the commands that run them (a point's shell line, a command per group, a Makefile)
- :mod:`.groups`: points that train together, numbered, and running one group in this process
- :mod:`.local`: what a backend is given and returns, and the local backend (subprocesses here)
- :mod:`.ray_backend`: points as Ray tasks, here or on a cluster
- :mod:`.slurm_backend`: groups as a Slurm job array through submitit (:mod:`.slurm_options`: its settings)
- :mod:`.backends`: the backends by name, and :func:`run`
- :mod:`.results`: summary.csv and the plots of a sweep folder, from disk
"""
from skipexp.core.machine import available_cores
from skipexp.experiments.sweep.backends import BACKENDS, SweepOutcome, check_backend, run
from skipexp.experiments.sweep.commands import make_file, shell_line
from skipexp.experiments.sweep.local import Listener, PointResult, command_for, run_local
from skipexp.experiments.sweep.results import collect, finish, write_summary_csv
from skipexp.experiments.sweep.spec import (
    Point,
    Sweep,
    folder_points,
    is_sweep_dir,
    load,
    load_folder,
    point_name,
    points,
    sweep_dir,
    write_sweep_file,
)
from skipexp.rundir.reuse import config_differences, flatten, folder_state, read_status, reuse_or_move_aside

__all__ = [
    "BACKENDS", "Listener", "Point", "PointResult", "Sweep", "SweepOutcome", "check_backend", "collect",
    "command_for", "config_differences", "available_cores", "finish", "flatten", "folder_points", "is_sweep_dir",
    "load", "load_folder", "make_file", "point_name", "folder_state", "points", "read_status", "run", "run_local",
    "reuse_or_move_aside", "shell_line", "sweep_dir", "write_summary_csv", "write_sweep_file",
]
