"""Curvature of a loss from Hessian-vector products: the top eigenvalue (Lanczos) and the trace (Hutchinson).

Nothing here forms the Hessian: one forward and backward pass builds the gradient's graph, and each
product ``H v`` is a second backward through it (``v . grad`` differentiated again), about the cost of two
more backward passes. The model's parameters and their ``.grad`` are left alone, and the random vectors
come from a generator of their own, so a measurement taken while a model trains changes none of its numbers.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Hvp = Callable[[torch.Tensor], torch.Tensor]


def hessian_vector_product(loss: torch.Tensor, params: list[torch.Tensor]) -> Hvp:
    """``v -> H v`` for the Hessian of ``loss`` (a scalar built from ``params``) with respect to ``params``;
    ``v`` is a flat vector of every parameter in order (n,), or a batch of them (k, n)."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])                        # (n,)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        batched = v.dim() == 2
        hv = torch.autograd.grad(flat, params, grad_outputs=v, retain_graph=True, is_grads_batched=batched,
                                 allow_unused=True)
        parts = [torch.zeros(*v.shape[:-1], p.numel(), dtype=v.dtype, device=v.device) if h is None
                 else h.reshape(*v.shape[:-1], -1) for h, p in zip(hv, params)]
        return torch.cat(parts, dim=-1).detach()
    return hvp


@dataclass
class Eigen:
    top: float          # the largest eigenvalue (algebraic: the most positive curvature)
    bottom: float       # the smallest Ritz value: the most negative curvature, less accurate than top
    iterations: int     # Hessian-vector products used
    converged: bool     # whether top changed by less than the tolerance between the last two iterations


def lanczos(hvp: Hvp, n: int, iterations: int = 20, tol: float = 1e-3, generator: torch.Generator | None = None,
            dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Eigen:
    """The extreme eigenvalues of the symmetric ``n x n`` operator ``hvp`` by Lanczos with full
    reorthogonalisation, stopping once the top Ritz value moves by less than ``tol`` (relative) or after
    ``iterations`` products. With ``iterations >= n`` the Ritz values are the exact spectrum."""
    q = torch.randn(n, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    q = q / q.norm()
    basis = [q]
    alphas: list[float] = []
    betas: list[float] = []
    top_before, converged = math.nan, False
    for _ in range(min(iterations, n)):
        w = hvp(basis[-1])
        alpha = float(w @ basis[-1])
        alphas.append(alpha)
        # full reorthogonalisation (twice is enough): without it rounding brings back copies of the top
        # eigenvector, which shows up as a spurious repeated eigenvalue
        Q = torch.stack(basis)                                               # (j + 1, n)
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        ritz = torch.linalg.eigvalsh(_tridiagonal(alphas, betas))
        top = float(ritz[-1])
        if tol > 0 and abs(top - top_before) <= tol * max(abs(top), 1e-12):
            converged = True
            break
        top_before = top
        beta = float(w.norm())
        if beta <= 1e-10 * max(abs(top), 1.0):   # an invariant subspace: the Ritz values are exact
            converged = True
            break
        betas.append(beta)
        basis.append(w / beta)
    ritz = torch.linalg.eigvalsh(_tridiagonal(alphas, betas[:len(alphas) - 1]))
    return Eigen(float(ritz[-1]), float(ritz[0]), len(alphas), converged or len(alphas) >= n)


def _tridiagonal(alphas: list[float], betas: list[float]) -> torch.Tensor:
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas[:len(alphas) - 1], dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


@dataclass
class Trace:
    value: float        # the estimate of tr(H)
    se: float           # its standard error over the probes
    probes: int


def hutchinson(hvp: Hvp, n: int, probes: int = 20, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", batch: int = 10) -> Trace:
    """tr(H) = E[v^T H v] over Rademacher vectors v (Hutchinson 1989), ``probes`` of them, ``batch`` at a time."""
    samples: list[torch.Tensor] = []
    for start in range(0, probes, batch):
        k = min(batch, probes - start)
        v = (torch.randint(0, 2, (k, n), generator=generator) * 2 - 1).to(device=device, dtype=dtype)  # (k, n)
        samples.append((v * hvp(v)).sum(dim=1).double().cpu())
    s = torch.cat(samples)
    se = float(s.std() / math.sqrt(len(s))) if len(s) > 1 else math.nan
    return Trace(float(s.mean()), se, len(s))


@dataclass
class Sharpness:
    loss: float         # the loss the curvature is of
    top: float          # largest Hessian eigenvalue
    bottom: float       # smallest Ritz value (most negative curvature found)
    trace: float        # Hutchinson's estimate of tr(H)
    trace_se: float     # its standard error
    iterations: int     # Lanczos products used for top and bottom
    converged: bool

    def row(self) -> dict:
        return {"loss": self.loss, "top_eigenvalue": self.top, "bottom_eigenvalue": self.bottom, "trace": self.trace,
                "trace_se": self.trace_se, "lanczos_iterations": self.iterations, "converged": int(self.converged)}


COLUMNS = ["loss", "top_eigenvalue", "bottom_eigenvalue", "trace", "trace_se", "lanczos_iterations", "converged"]


def sharpness(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, iterations: int = 20, probes: int = 20,
              seed: int = 0, tol: float = 1e-3) -> Sharpness:
    """Curvature of the mean cross-entropy of ``model`` on (x, y) in eval mode (batch norm reads its running
    statistics), with respect to every parameter; the model's mode is put back afterwards."""
    was_training = model.training
    model.eval()
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        n = sum(p.numel() for p in params)
        with torch.enable_grad():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            hvp = hessian_vector_product(loss, params)
            g = torch.Generator().manual_seed(seed)
            dtype, device = params[0].dtype, params[0].device
            eig = lanczos(hvp, n, iterations, tol, g, dtype, device)
            tr = hutchinson(hvp, n, probes, g, dtype, device)
    finally:
        model.train(was_training)
    return Sharpness(float(loss.detach()), eig.top, eig.bottom, tr.value, tr.se, eig.iterations, eig.converged)
