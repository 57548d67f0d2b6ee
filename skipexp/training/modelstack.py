"""The K models the loop trains, as one: :class:`ModelStack` (K >= 1; a lone run is a stack of one).

The loop sees only per-model values: a (K,) loss, a (K,) "not finite" flag, a :class:`StepLog` of (K, ...)
values on log steps. ``ModelStack`` is K SkipNets of one shape as one module with a leading K dimension (see
:mod:`skipexp.training.stacked`), whose slices are copied back into each run's own model for evaluation and
checkpoints. Each operation computes model k from model k's own elements the same way whatever K is, so model
k's numbers are those of its lone run to the bit (on the CPU; on CUDA within rounding, as cuBLAS picks kernels
by shape). Stacked models may each have their own optimizer hyperparameters, schedule and gradient clip (see
:mod:`skipexp.training.stackable` for what may differ).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.fx  # imported by torch itself already; it does not pull in torch._dynamo
from torch import nn

from skipexp.core.conv import ConvNet
from skipexp.core.metrics import accuracy, stack_act_grad_norms, stack_act_rms, stack_grad_norms
from skipexp.training.optim import build_schedule, build_stacked_optimizer
from skipexp.training.run import Logged, Run
from skipexp.training.stacked import StackedLinear, copy_buffers, stack_models


@dataclass
class StepLog:
    """A log step's values of K models, on the device: the batch loss, accuracy and total gradient norm (K,),
    the per-layer gradient norms (K, layers), and per boundary the loss gradient's norm and the activations' RMS
    (K, boundaries)."""
    loss: torch.Tensor
    acc: torch.Tensor
    grad_norm: torch.Tensor
    layer_grad_norms: torch.Tensor
    act_grad_norms: torch.Tensor
    act_rms: torch.Tensor

    def read(self) -> list[Logged]:
        """Each model's values on the host, with one device-to-host copy."""
        parts = [self.loss[:, None], self.acc[:, None], self.grad_norm[:, None], self.layer_grad_norms,
                 self.act_grad_norms, self.act_rms]
        ends = list(itertools.accumulate(p.shape[1] for p in parts))
        out = []
        for row in torch.cat(parts, dim=1).tolist():
            loss, acc, norm, layers, act_grad, act = (row[a:b] for a, b in zip([0, *ends], ends))
            out.append(Logged(loss[0], acc[0], norm[0], layers, act_grad, act))
        return out


def nonfinite(loss: torch.Tensor, grads: list[torch.Tensor], one: torch.Tensor) -> torch.Tensor:
    """() bool: is a loss (any shape) or any gradient NaN or infinite? Stays on the device (no host sync).

    One fused pass over all gradients: the check AMP's grad scaler uses, with a scale of ``one`` (a () tensor
    holding 1) that leaves them as they are (4x cheaper on the CPU than a norm per gradient, and this runs
    every step). It looks at elements, so a finite gradient whose norm overflows is not flagged here; the
    engine catches that at log steps, where the norm is computed.
    """
    found = (~torch.isfinite(loss.detach())).sum(dtype=torch.float32)   # () count of non-finite losses
    if grads:
        torch._amp_foreach_non_finite_check_and_unscale_(grads, found, one)
    return found > 0


class _StatefulLeaves(torch.fx.Tracer):
    """fx's tracer, with every module that holds buffers of its own (a batch norm and its running statistics)
    kept as one call: traced through, its ``if self.training`` would be fixed at trace time and its in-place
    updates of the running statistics would not run as they do in its own forward."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return super().is_leaf_module(m, qualname) or any(True for _ in m.buffers(recurse=False))


def flat_forward(model: nn.Module) -> nn.Module:
    """``model``'s forward without capture as one traced graph, or ``model`` where it cannot be traced.

    The same modules and ops in the same order, so the same numbers to the bit, minus the Python around
    them: the units loop, module-list lookups, and the calls of ``nn.Identity`` (norm "none", the
    projection of an equal-width skip). That is ~70 of a width-64, depth-20 SkipNet's ~145 module calls
    a step, ~0.3 ms of a ~5 ms step on one CPU thread, for a trace of ~30 ms (with the engine's frozen
    collector). The graph shares the model's modules and parameters, so updates, ``train()``/``eval()``
    and copies into the model reach it.
    """
    try:
        graph = _StatefulLeaves().trace(model, concrete_args={"capture": False})
    except Exception:   # noqa: BLE001 - any model fx cannot trace trains through its own forward
        return model
    graph_module = torch.fx.GraphModule(model, graph, model.__class__.__name__)
    for node in list(graph.nodes):
        if node.op == "call_module" and isinstance(graph_module.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph.lint()
    graph_module.recompile()
    return graph_module


class TracedForward:
    """The forward of non-capture steps: with ``compile``, the compiled model; otherwise the model's own forward
    for the first TRACE_AFTER calls and its traced graph after. A trace (~30 ms) saves ~0.2 ms a step, so it
    pays only over a few hundred steps: a short run never traces, a long one loses little by waiting."""

    TRACE_AFTER = 64

    def __init__(self, model: nn.Module, compile: bool):
        self.model, self.compile, self.fn, self.calls = model, compile, None, 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fn is None:
            if self.compile:
                self.fn = torch.compile(self.model)
            elif self.calls >= self.TRACE_AFTER:
                self.fn = flat_forward(self.model)
            else:
                self.calls += 1
                return self.model(x)
        return self.fn(x)


class ModelStack:
    """K models as one stacked model and optimizer, and how to copy model k's slice back into its own run."""

    def __init__(self, runs: list[Run]):
        self.runs, self.k = runs, len(runs)
        self.model = stack_models([r.model for r in runs])
        lead = runs[0]
        trains = [r.cfg.train for r in runs]
        self.opt = build_stacked_optimizer(self.model.parameters(), trains)
        self.sched = build_schedule(self.opt, lead.cfg.train, lead.total_steps, trains)
        clips = [t.grad_clip or float("inf") for t in trains]   # inf: a model without a clip keeps its gradient
        self.max_norms = torch.tensor(clips, device=lead.device) if any(t.grad_clip for t in trains) else None
        self.fast = TracedForward(self.model, lead.cfg.train.compile)
        self.one = torch.ones((), device=lead.device)
        self.mask = torch.ones(self.k, device=lead.device)   # 0 for models that have finished
        self.params = list(self.model.parameters())
        self.shapes = [p.shape for p in lead.model.parameters()]
        assert [p.shape[1:].numel() for p in self.params] == [s.numel() for s in self.shapes]
        stacked_weights = {id(m.weight) for m in self.model.modules() if isinstance(m, StackedLinear)}
        self.transposed = [id(p) in stacked_weights for p in self.params]
        layers = self.model.layers()
        self.layer_names = [name for name, _ in layers]
        assert self.layer_names == lead.probe.layer_names
        self.probe_params = [p for _, ps in layers for p in ps]
        self.segment = torch.tensor([i for i, (_, ps) in enumerate(layers) for _ in ps], device=lead.device)
        self._load_states()

    @torch.no_grad()
    def _load_states(self) -> None:
        """Stack the runs' own optimizer state and schedule position (a resumed run's, from its checkpoint)."""
        own = [list(r.model.parameters()) for r in self.runs]
        for i, p in enumerate(self.params):
            states = [r.opt.state.get(ps[i], {}) for r, ps in zip(self.runs, own)]
            keys = {key for s in states for key in s}
            if keys:
                self.opt.state[p] = {key: self._stack_state(i, p, key, [s.get(key) for s in states]) for key in keys}
        lead = self.runs[0]
        self.sched.last_epoch = lead.sched.last_epoch
        for g, run in zip(self.sched.groups, self.runs):
            g["lr"] = run.opt.group["lr"]

    def _stack_state(self, i: int, p: torch.Tensor, key: str, values: list[torch.Tensor | None]) -> torch.Tensor:
        """One state tensor of stacked parameter ``p`` from the models' own (a missing one is zeros)."""
        if key == "step":   # Adam's step count: the models are at one step, and share it
            return values[0].clone()
        return torch.stack([torch.zeros_like(p[k]) if v is None else
                            (v.t() if self.transposed[i] else v.reshape(p.shape[1:]))
                            for k, v in enumerate(values)]).contiguous()

    def forward(self, x: torch.Tensor, capture: bool):
        """x (K, B, in) -> logits (K, B, classes) and, with ``capture``, the boundaries (K, B, H)."""
        if not capture:
            return self.fast(x), None
        logits, hs = self.model(x, capture=True)
        for h in hs:
            h.retain_grad()
        return logits, hs

    def losses(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k, n, c = logits.shape   # rows as (K * B, classes): the loss's gradient comes back contiguous
        return nn.functional.cross_entropy(logits.reshape(k * n, c), y.reshape(-1), reduction="none").view(k, n).mean(1)

    def backward(self, losses: torch.Tensor) -> None:
        self.opt.zero_grad()
        (losses * self.mask).sum().backward()   # models share no weights: each slice gets its own model's gradient
        self.opt.gather_grads()

    def nonfinite(self, losses: torch.Tensor) -> torch.Tensor:
        """(K,) bool, on the device. On the CPU (read every step anyway) one fused pass over all gradients
        first, and the per-model passes only once something is not finite."""
        grads = [p.grad for p in self.params if p.grad is not None]
        bad = ~torch.isfinite(losses.detach())
        if losses.device.type == "cpu" and not bool(nonfinite(losses, grads, self.one).any()):
            return bad
        found = torch.zeros(self.k, device=losses.device)
        for k in range(self.k):
            torch._amp_foreach_non_finite_check_and_unscale_([g[k] for g in grads], found[k], self.one)
        return bad | (found > 0)

    def record(self, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, hs: list[torch.Tensor]) -> StepLog:
        """Every model's log-step values, on the device."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.probe_params]
        total, layers = stack_grad_norms(grads, self.segment, len(self.layer_names))
        return StepLog(losses.detach(), accuracy(logits, y), total, layers, stack_act_grad_norms(hs), stack_act_rms(hs))

    def lrs(self) -> list[float]:
        lrs = self.sched.get_last_lr()
        return lrs if len(lrs) == self.k else lrs * self.k

    def clip_(self) -> None:
        """Per-model clip_grad_norm_: each model's gradient scaled by its own max over its own total norm."""
        if self.max_norms is None:
            return
        grads = [p.grad for p in self.params if p.grad is not None]
        norms = torch.stack([g.reshape(self.k, -1).square().sum(1) for g in grads], dim=1).sum(1).sqrt()  # (K,)
        coef = (self.max_norms / (norms + 1e-6)).clamp(max=1.0)                                     # 1: unclipped
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    @torch.no_grad()
    def sync(self, k: int, state: bool = False) -> None:
        """Copy model k's weights and running statistics (and, with ``state``, its optimizer and schedule state)
        into its own run."""
        run = self.runs[k]
        for i, param in enumerate(run.model.parameters()):
            param.copy_(self._slice(i, self.params[i], k))
        copy_buffers(self.model, run.model, k)   # running statistics, counts: evaluation and checkpoints read them
        if not state:
            return
        whole = self.opt.state_dict()
        own = {**run.opt.group, "lr": self.lrs()[k]}   # its own hyperparameters, at this step's lr
        own_state = {i: {key: (self._slice(i, v, k).clone() if torch.is_tensor(v) and v.shape == self.params[i].shape
                          else v)
                    for key, v in s.items() if run.opt.uses(key, own)}
                for i, s in whole["state"].items()}
        group = {key: v for key, v in own.items() if key != "params"}
        run.opt.load_state_dict({"state": {i: s for i, s in own_state.items() if s},
                                 "param_groups": [{**group, "params": list(range(len(self.params)))}]})
        run.sched.load_state_dict(self.sched.state_dict(k if self.opt.models is not None else None))

    def _slice(self, i: int, t: torch.Tensor, k: int) -> torch.Tensor:
        """Model k's part of a tensor shaped like stacked parameter i, in the lone model's layout."""
        return t[k].t() if self.transposed[i] else t[k].view(self.shapes[i])

    @torch.no_grad()
    def retire(self, k: int) -> None:
        """Zero a finished model's weights, gradient and optimizer state, and its loss's weight: it then stays
        at zero, finite and cheap (a NaN gradient of the step it diverged at would otherwise reach its weights)."""
        self.mask[k] = 0.0
        for p in self.params:
            p[k].zero_()
            if p.grad is not None:
                p.grad[k].zero_()
            for v in self.opt.state.get(p, {}).values():
                if torch.is_tensor(v) and v.shape == p.shape:
                    v[k].zero_()


class ConvModelStack(ModelStack):
    """:class:`ModelStack` for conv nets (stacked by :func:`~skipexp.training.stacked_conv.stack_conv_models`):
    their boundaries are (N, K*C, H, W), so the logged values are read per model from that layout."""

    def record(self, losses: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, hs: list[torch.Tensor]) -> StepLog:
        """Every model's log-step values, on the device. Model k's boundary is made contiguous, (K, N, C*H*W),
        before any reduction, so that every reduction runs over model k's own elements the same way whatever K."""
        k, n = self.k, y.shape[1]

        def per_model(t: torch.Tensor) -> torch.Tensor:                    # (N, K*C, H, W) -> (K, N, C*H*W)
            return t.reshape(n, k, -1).transpose(0, 1).contiguous()

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.probe_params]
        total, layers = stack_grad_norms(grads, self.segment, len(self.layer_names))
        act_grad = torch.stack([per_model(h.grad).norm(dim=2).mean(1) for h in hs], dim=1) * n     # (K, bounds)
        act = torch.stack([per_model(h.detach()).reshape(k, -1).square().mean(1).sqrt() for h in hs], dim=1)
        return StepLog(losses.detach(), accuracy(logits, y), total, layers, act_grad, act)


def model_stack(runs: list[Run]) -> ModelStack:
    """The runs' models as one stack: conv nets' own layout, or every other model's."""
    return (ConvModelStack if isinstance(runs[0].model, ConvNet) else ModelStack)(runs)
