"""CUDA graphs: a step's kernels recorded once, then replayed with one launch.

A step of configs/skip.yaml (20 blocks of width 64) is some 250 small kernels. Launched one at a time from
Python, the GPU waits on the host between them: ~8.6 ms a step on an H100, no faster than two CPU cores.
Replayed as graphs they run back to back: 1.4 ms a step there, the time of the kernels themselves.

A function may be captured when it reads and writes only tensors that outlive it (parameters, gradients
kept in place, optimizer state, the caller's input buffers) and never waits on the host: capture records
its kernels without running them, and every replay runs them again on whatever those tensors then hold.
Python values it reads (a float learning rate, a step number) are baked in at capture, so those go in
device tensors that the caller fills before each replay.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import torch


class CaptureFailed(RuntimeError):
    """CUDA refused to capture a function (a host sync or an unsupported call in it): nothing of it ran."""


class Graphs:
    """Functions captured on first use under a key and replayed after; their outputs are the captured
    tensors, refreshed by each replay (read them before the next replay of the same key)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)   # where capture happens, and the warm-up before it
        self.captured: dict[Hashable, tuple[torch.cuda.CUDAGraph, Any]] = {}

    def eager(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run eagerly on the capture stream: a warm-up step, so that what the first use of a stream
        initialises (library handles and workspaces, gradient accumulators) is not first met inside a capture."""
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            out = fn()
        main.wait_stream(self.stream)
        return out

    def __call__(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        """``fn()``'s outputs, by capturing ``fn`` (first call with ``key``) and replaying it; CaptureFailed
        where CUDA refuses the capture."""
        if key not in self.captured:
            main = torch.cuda.current_stream(self.device)
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.device(self.device), torch.cuda.graph(graph, stream=self.stream):
                    out = fn()
            except RuntimeError as e:
                # a failed capture ends in capture_end's own error, with what broke it as its context; and it
                # leaves the capture stream current
                torch.cuda.set_stream(main)
                raise CaptureFailed(str(e.__context__ or e)) from e
            self.captured[key] = (graph, out)
        graph, out = self.captured[key]
        graph.replay()
        return out
