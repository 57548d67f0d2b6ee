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
