"""Gradient and activation statistics, computed on log steps only, with one device-to-host copy."""
from __future__ import annotations

import torch
from torch import nn


class GradProbe:
    """Per-layer weight-gradient norms, and per-boundary activation-gradient norms and RMS.

    ``act_grad`` at boundary h is the mean over examples n of ||d loss_n / d h_n||, where loss_n is
    example n's own loss: since the batch loss is the mean of the loss_n, that is the batch size
    times the mean row norm of h.grad. It does not depend on the batch size.
    """

    def __init__(self, layers: list[tuple[str, list[nn.Parameter]]]):
        self.layer_names = [name for name, _ in layers]
        self.params = [p for _, ps in layers for p in ps]
        # on the parameters' device from the start: a host-to-device copy has no place in a captured step
        device = self.params[0].device if self.params else None
        self._segment = torch.tensor([i for i, (_, ps) in enumerate(layers) for _ in ps], device=device)

    def weight_norms(self) -> torch.Tensor:
        """(layers,) L2 norm of each layer's gradient, weights and bias together; no host sync."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        sq = torch.stack(torch._foreach_norm(grads)).square()               # (params,)
        return torch.zeros(len(self.layer_names), device=sq.device, dtype=sq.dtype).index_add_(
            0, self._segment, sq).sqrt()

    @staticmethod
    def act_grad_norms(hs: list[torch.Tensor]) -> torch.Tensor:
        """(boundaries,) mean per-example norm of the loss gradient at each boundary (needs retain_grad)."""
        n = hs[0].shape[0]
        if _same_shape(hs):   # one pass over all boundaries, the same numbers to the bit (a norm per row either way)
            return torch.stack([h.grad for h in hs]).flatten(2).norm(dim=2).mean(1) * n
        return torch.stack([h.grad.flatten(1).norm(dim=1).mean() for h in hs]) * n

    @staticmethod
    def act_rms(hs: list[torch.Tensor]) -> torch.Tensor:
        """(boundaries,) root mean square of each activation."""
        # one mean per boundary, as a batched mean over a stack rounds differently at some sizes
        return torch.stack([h.detach().square().mean() for h in hs]).sqrt()


def _same_shape(ts: list[torch.Tensor]) -> bool:
    return all(t.shape == ts[0].shape for t in ts)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(...,) the share of rows whose top logit is the label: logits (..., B, classes), labels (..., B)."""
    return (logits.argmax(-1) == y).float().mean(-1)


# --- per model of a stack: every tensor with a leading model dimension K --------------------------
# Each reduction runs over one model's own elements along the last dimensions, never across models, so that
# model k's values do not depend on K.

def stack_grad_norms(grads: list[torch.Tensor], segment: torch.Tensor,
                     layers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each model's total gradient norm (K,) and per-layer norms (K, layers), weights and bias together, from
    the (K, ...) gradients of its parameters; ``segment`` gives each parameter's layer."""
    k = grads[0].shape[0]
    sq = torch.stack([g.reshape(k, -1).square().sum(1) for g in grads], dim=1)                  # (K, params)
    w = torch.zeros(k, layers, dtype=sq.dtype, device=sq.device).index_add_(1, segment, sq)     # (K, layers)
    return w.sum(1).sqrt(), w.sqrt()


def stack_act_grad_norms(hs: list[torch.Tensor]) -> torch.Tensor:
    """(K, boundaries) :meth:`GradProbe.act_grad_norms` of each model, from boundaries (K, B, H) with grads."""
    n = hs[0].shape[1]
    return torch.stack([h.grad.norm(dim=2).mean(1) for h in hs], dim=1) * n


def stack_act_rms(hs: list[torch.Tensor]) -> torch.Tensor:
    """(K, boundaries) :meth:`GradProbe.act_rms` of each model, from boundaries (K, B, H)."""
    return torch.stack([h.detach().square().mean((1, 2)).sqrt() for h in hs], dim=1)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192) -> tuple[float, float]:
    """(mean loss, accuracy) over a whole split, in chunks; one host sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for i in range(0, len(y), chunk):
        logits = model(x[i:i + chunk])
        loss_sum += nn.functional.cross_entropy(logits, y[i:i + chunk], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + chunk]).sum()
    model.train(was_training)
    loss, acc = (torch.stack([loss_sum, correct]) / len(y)).tolist()
    return loss, acc
