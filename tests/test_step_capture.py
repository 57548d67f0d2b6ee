"""Steps replayed as CUDA graphs give the numbers of eager steps.

On the CPU, a stand-in for :class:`skipexp.training.graphs.Graphs` (the captured function runs again at each
replay) drives the engine's capture path: gradients held in the tensors of the first step, learning rates
read from a tensor, a capture that fails falling back to eager steps. With CUDA, the real graphs: a run
with ``train.cuda_graphs`` on equals the same run with it off, to the bit, for lone and stacked models, a
diverging one and a resumed one.
"""
from __future__ import annotations

import copy
import itertools
from pathlib import Path

import pytest
import torch
from conftest import TINY, assert_close_numbers, assert_identical, assert_same_numbers, train_one, train_together

from skipexp.core import config
from skipexp.rundir import files
from skipexp.training import fit
from skipexp.training import step as step_mod
from skipexp.training.graphs import CaptureFailed

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def raw_config(**sections: dict) -> dict:
    raw = copy.deepcopy(TINY)
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values}
    return raw


# models with every kind of parameter and step: layer norm, a gate, Adam with a cosine schedule and a clip
RICH = {"model": {"norm": "layernorm", "skip": {"kind": "gated"}},
        "train": {"optimizer": "adam", "lr": 0.01, "schedule": "cosine", "grad_clip": 0.5}}


def run_group(raw: dict, out: Path, lrs: list[float] | None = None, seeds: list[int] | None = None,
              **kw) -> list[fit.RunResult]:
    """Train one config (several seeds, or several learning rates: models trained together) into ``out``."""
    cfg = config.from_dict(raw)
    seeds = seeds or [cfg.seeds[0]] * len(lrs or [0])
    cfgs = [cfg.replace(seed=s, name=f"m{i}", train=cfg.train if lrs is None else
                        config.from_dict({**raw, "train": {**raw["train"], "lr": lrs[i]}}).train)
            for i, s in enumerate(seeds)]
    dirs = [fit.create_run(c, out) for c in cfgs]
    if len(cfgs) == 1:
        return [train_one(cfgs[0], dirs[0], **kw)]
    return train_together(cfgs, dirs, **kw)


class ReplayOnCpu:
    """CUDA graphs' contract on the CPU: what a key captured is run again at every replay."""

    fail: str | None = None

    def __init__(self, device: torch.device):
        self.captured: dict = {}

    def eager(self, fn):
        return fn()

    def __call__(self, key, fn):
        if key not in self.captured:
            if self.fail:
                raise CaptureFailed(self.fail)
            self.captured[key] = fn
        return self.captured[key]()


@pytest.fixture
def replay_on_cpu(monkeypatch: pytest.MonkeyPatch) -> type[ReplayOnCpu]:
    monkeypatch.setattr(step_mod, "capturable", lambda device, train: train.cuda_graphs)
    monkeypatch.setattr(step_mod, "Graphs", ReplayOnCpu)
    return ReplayOnCpu


@pytest.mark.parametrize("case", ["sgd", "rich", "stacked lrs", "diverging seeds", "split smaller than a batch"])
def test_the_capture_path_equals_eager_steps(tmp_path: Path, replay_on_cpu, case: str) -> None:
    raw, kw = {"sgd": (raw_config(), {}),
               "split smaller than a batch": (raw_config(data={"n_train": 40}), {"seeds": [0, 1]}),
               "rich": (raw_config(**RICH), {}),
               "stacked lrs": (raw_config(train={"schedule": "cosine", "grad_clip": 1.0}), {"lrs": [0.02, 0.05, 0.1]}),
               "diverging seeds": (raw_config(model={"init": "kaiming"}, log={"every": 4}), {"seeds": [0, 2, 4, 6]}),
               }[case]
    replayed = run_group(raw, tmp_path / "replayed", **kw)
    eager = run_group({**raw, "train": {**raw["train"], "cuda_graphs": False}}, tmp_path / "eager", **kw)
    for a, b in zip(replayed, eager):
        # captured steps read lr from a float32 tensor, eager CPU steps get a double: Adam's CPU kernel rounds
        # the two differently (SGD's does not), so there the paths agree within rounding, not to the bit
        (assert_close_numbers if case == "rich" else assert_same_numbers)(a.run_dir, b.run_dir)
        assert a.status in ("completed", "diverged")
        meta = files.read_json(a.run_dir / "meta.json")
        assert meta["cuda_graphs"] is True and "cuda_graphs_error" not in meta
        assert "cuda_graphs" not in files.read_json(b.run_dir / "meta.json")   # eager on the CPU: nothing to say
    if case == "diverging seeds":
        assert [r.status for r in replayed][1:] == ["diverged"] * 3   # otherwise the case shows nothing


def test_a_capture_that_fails_trains_on_eagerly_and_says_why(tmp_path: Path, replay_on_cpu) -> None:
    replay_on_cpu.fail = "operation not permitted when stream is capturing"
    raw = raw_config()
    failed = run_group(raw, tmp_path / "failed")[0]
    eager = run_group({**raw, "train": {**raw["train"], "cuda_graphs": False}}, tmp_path / "eager")[0]
    assert failed.status == "completed"
    assert_same_numbers(failed.run_dir, eager.run_dir)
    meta = files.read_json(failed.run_dir / "meta.json")
    assert meta["cuda_graphs"] is False
    assert meta["cuda_graphs_error"] == "operation not permitted when stream is capturing"


def test_learning_rates_read_from_a_tensor_follow_the_schedule() -> None:
    """lr_on_device: each model's own lr and schedule, as the float path gives them (within float32's rounding
    of the lr), over steps where the lrs change and the grouping of equal lrs would."""
    from skipexp.training import optim

    trains = [config.from_dict(raw_config(train={"optimizer": kind, "lr": lr, "schedule": schedule})).train
              for kind in ("sgd",) for lr, schedule in ((0.1, "cosine"), (0.1, "constant"), (0.05, "cosine"))]
    torch.manual_seed(0)
    start = [torch.randn(3, 4, 5), torch.randn(3, 5)]
    results = []
    for on_device in (False, True):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = optim.build_stacked_optimizer(params, trains)
        sched = optim.build_schedule(opt, trains[0], 6, trains)
        if on_device:
            opt.lr_on_device(torch.device("cpu"))
        gen = torch.Generator().manual_seed(1)
        for _ in range(7):   # past the end of the schedule: cosine's lrs meet at 0
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            opt.load_lr()
            opt.step()
            sched.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a[0], a[1])   # the models did follow different schedules


# --- on CUDA: the real graphs -------------------------------------------------------------------------

@cuda
@pytest.mark.parametrize("case", ["sgd", "rich", "stacked lrs", "diverging seeds", "every step logged"])
def test_cuda_graph_steps_equal_eager_steps_to_the_bit(tmp_path: Path, case: str) -> None:
    base = raw_config(log={"checkpoint": "last"})
    base["device"] = "cuda"
    raw, kw = {"sgd": (base, {}),
               "rich": ({**base, **raw_config(**RICH), "device": "cuda"}, {}),
               "stacked lrs": ({**base, "train": {**base["train"], "schedule": "cosine", "grad_clip": 1.0}},
                               {"lrs": [0.02, 0.05, 0.1]}),
               "diverging seeds": ({**base, "model": {**base["model"], "init": "kaiming"},
                                    "train": {**base["train"], "lr": 0.3}}, {"seeds": [0, 2, 4, 6]}),
               "every step logged": ({**base, "log": {**base["log"], "every": 1, "eval_every": 3}}, {}),
               }[case]
    replayed = run_group(raw, tmp_path / "replayed", **kw)
    eager = run_group({**raw, "train": {**raw["train"], "cuda_graphs": False}}, tmp_path / "eager", **kw)
    for a, b in zip(replayed, eager):
        assert_identical(a.run_dir, b.run_dir)
        meta = files.read_json(a.run_dir / "meta.json")
        assert meta.get("cuda_graphs_error") is None and meta["cuda_graphs"] is True, meta
        assert files.read_json(b.run_dir / "meta.json")["cuda_graphs"] is False
    if case == "diverging seeds":
        assert any(r.status == "diverged" for r in replayed)   # otherwise the case shows nothing


@cuda
def test_cuda_graph_run_equals_the_cpu_run(tmp_path: Path) -> None:
    raw = raw_config(**RICH)
    on_cpu = run_group(raw, tmp_path / "cpu")[0]
    on_cuda = run_group({**raw, "device": "cuda"}, tmp_path / "cuda")[0]
    assert files.read_json(on_cuda.run_dir / "meta.json")["cuda_graphs"] is True
    assert_close_numbers(on_cuda.run_dir, on_cpu.run_dir)


@cuda
def test_a_resumed_cuda_graph_run_equals_one_never_stopped(tmp_path: Path) -> None:
    raw = raw_config(train={"epochs": 3}, log={"checkpoint": "last"})
    raw["device"] = "cuda"
    whole = run_group(raw, tmp_path / "whole")[0]
    calls = itertools.count()
    stopped = run_group(raw, tmp_path / "stopped", should_stop=lambda: next(calls) >= 10)[0]
    assert stopped.status == "interrupted"
    resumed = fit.resume(stopped.run_dir)
    assert resumed.status == "completed"
    assert_identical(resumed.run_dir, whole.run_dir)
