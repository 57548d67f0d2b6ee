"""The oracle test: the logged norms equal a plain-autograd recomputation on the same batches.

The real training loop runs a few steps on a tiny config. The test then replays them on its own: the same
seed and init, the same batches (``data.batch_order``), plain SGD, and computes every logged quantity
independently of ``GradProbe``:

- weight-gradient norm of a layer: sqrt of the sum of squares of ``autograd.grad`` of the batch loss
  over that layer's own parameters;
- activation-gradient norm at boundary h: mean over examples n of ||d loss_n / d h_n||, each example
  forwarded alone and differentiated through its own cross-entropy (no batch-size scaling to get right);
- activation RMS: sqrt(mean(h**2)) over the batch.
"""
from __future__ import annotations

import math

import pytest
import torch
from conftest import train_one
from torch import nn

from skipexp.core import config, data, nets
from skipexp.core.models import SkipNet
from skipexp.rundir import runio
from skipexp.training import fit as train

STEPS, BATCH, N_TRAIN = 6, 16, 64  # 4 steps per epoch: the replay crosses an epoch boundary
IMAGES = {"dataset": "synthetic-images", "image_size": 6, "channels": 2}

CASES = {
    "identity": {"model": {"depth": 4, "width": 12, "skip": {"kind": "identity"}}},
    "none": {"model": {"depth": 6, "width": 12, "skip": {"kind": "none"}}},
    "rezero-widths": {"model": {"depth": 4, "width": [12, 10, 10, 8], "skip": {"kind": "rezero", "every": 2}}},
    "gated-span2": {"model": {"depth": 4, "width": [12, 12, 9, 9], "skip": {"kind": "gated", "span": 2}}},
    "dense-clip": {"model": {"depth": 3, "width": 8, "skip": {"kind": "dense"}}, "train": {"grad_clip": 0.5}},
    # conv nets: boundaries of three shapes, option A and B shortcuts, a ReZero alpha, a GroupNorm
    "conv-identity": {"model": {"block": "conv", "depth": 3, "width": 3}, "data": IMAGES},
    "conv-pre-rezero": {"model": {"block": "conv", "depth": 3, "width": 3, "order": "pre", "norm": "layernorm",
                                  "skip": {"kind": "rezero"}}, "data": IMAGES},
    "conv-plain-projection": {"model": {"block": "conv", "depth": 4, "width": 3, "stages": 2,
                                        "skip": {"kind": "projection", "every": 2}}, "data": IMAGES},
}


def make_config(case: dict) -> config.RunConfig:
    raw = {
        "name": "oracle", "seed": 3, "device": "cpu",
        "data": {"dataset": "synthetic", "n_train": N_TRAIN, "n_test": 32, "input_dim": 10, "num_classes": 4,
                 **case.get("data", {})},
        "train": {"steps": STEPS, "batch_size": BATCH, "lr": 0.1, "momentum": 0.9, "threads": 1,
                  **case.get("train", {})},
        "log": {"every": 1, "checkpoint": "none"},
        "model": case["model"],
    }
    return config.from_dict(raw)


def per_example_act_grads(model: SkipNet, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """mean_n ||d loss_n / d h_n|| at every boundary, one example at a time."""
    total = None
    for n in range(len(y)):
        logits, hs = model(x[n:n + 1], capture=True)
        loss_n = nn.functional.cross_entropy(logits, y[n:n + 1])
        grads = torch.autograd.grad(loss_n, hs)
        norms = torch.stack([g.norm() for g in grads]).double()
        total = norms if total is None else total + norms
    return (total / len(y)).tolist()


def replay(cfg: config.RunConfig) -> list[dict[str, dict[str, float]]]:
    splits = data.load(cfg.data)
    torch.manual_seed(cfg.seeds[0])
    model = nets.build(cfg, splits.input_dim, splits.num_classes)
    t = cfg.train
    opt = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum)
    per_epoch = N_TRAIN // BATCH
    layers = [name for name, _ in model.layers()]
    rows = []
    for step in range(1, STEPS + 1):
        epoch, pos = divmod(step - 1, per_epoch)
        idx = data.batch_order(N_TRAIN, cfg.seeds[0], epoch)[pos * BATCH:(pos + 1) * BATCH]
        x, y = splits.x_train[idx], splits.y_train[idx]
        logits, hs = model(x, capture=True)
        loss = nn.functional.cross_entropy(logits, y)
        params = dict(model.named_parameters())
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        weight = {}
        for layer in layers:
            module = model.get_submodule(layer)
            own = [f"{layer}.{p}" for p, _ in module.named_parameters(recurse=False)]
            weight[layer] = math.sqrt(sum(grads[name].double().square().sum().item() for name in own))
        act_grad = per_example_act_grads(model, x, y)
        rms = [h.detach().double().square().mean().sqrt().item() for h in hs]
        names = [f"h{i}" for i in range(len(hs))]
        rows.append({
            "metrics": {"train_loss": loss.item(), "train_acc": (logits.argmax(1) == y).double().mean().item(),
                        "grad_norm_total": math.sqrt(sum(v * v for v in weight.values()))},
            "grad": weight, "act_grad": dict(zip(names, act_grad)), "act": dict(zip(names, rms)),
        })
        # the step itself, with the gradients above (clipped like the run clips them)
        opt.zero_grad()
        for name, p in params.items():
            p.grad = grads[name].clone()
        if t.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
    return rows


@pytest.mark.parametrize("case", list(CASES))
def test_logged_norms_match_plain_autograd(tmp_path, case):
    cfg = make_config(CASES[case])
    run_dir = train.create_run(cfg, tmp_path)
    result = train_one(cfg, run_dir)
    assert result.status == "completed"
    expected = replay(cfg)
    files = {"metrics": "metrics.csv", "grad": "grad_norms.csv", "act_grad": "act_grad_norms.csv",
             "act": "act_norms.csv"}
    for key, fname in files.items():
        logged = runio.read_csv(run_dir / fname)
        assert [int(r["step"]) for r in logged] == list(range(1, STEPS + 1)), fname
        for step, (row, want) in enumerate(zip(logged, expected), start=1):
            if key != "metrics":  # every column is accounted for, in forward order
                assert list(row)[1:] == list(want[key]), fname
            for col, value in want[key].items():
                assert row[col] == pytest.approx(value, rel=1e-5, abs=1e-12), f"{fname} step {step} {col}"
    # the weight norms are not trivially equal: layers differ, and they change as the model trains
    grads = runio.read_csv(run_dir / "grad_norms.csv")
    assert len({round(v, 6) for k, v in grads[0].items() if k != "step"}) > 2
    assert grads[0] != grads[-1]


def test_act_grad_norm_does_not_depend_on_batch_size():
    """The per-example definition: duplicating every example leaves the logged value unchanged."""
    from skipexp.core.metrics import GradProbe

    torch.manual_seed(0)
    model = SkipNet(make_config(CASES["identity"]).model, 10, 4)
    x, y = torch.randn(8, 10), torch.arange(8) % 4

    def probe(x, y):
        logits, hs = model(x, capture=True)
        for h in hs:
            h.retain_grad()
        nn.functional.cross_entropy(logits, y).backward()
        return GradProbe.act_grad_norms(hs)

    assert torch.allclose(probe(x, y), probe(torch.cat([x, x]), torch.cat([y, y])), rtol=1e-5)
