"""Lesion study, gradient shattering probe and signal-propagation theory, each against an oracle."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cli, write_config

from skipexp.core import config
from skipexp.core.models import SkipNet
from skipexp.science import lesion, shatter, theory


def _train(tmp_path: Path, name: str, overrides: dict) -> Path:
    cfg = write_config(tmp_path / f"{name}.yaml", {"name": name, "train.epochs": 1, **overrides})
    run_dir = tmp_path / "cmp" / "runs" / name
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    cli("train", cfg, "--run-dir", run_dir, check=0)
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("lesion")
    return {kind: _train(tmp, kind, {"model.skip.kind": kind}) for kind in ("identity", "none")}


def _model(kind: str, depth: int = 4, width: int | list[int] = 16, norm: str = "none") -> SkipNet:
    cfg = config.from_dict({"model": {"depth": depth, "width": width, "norm": norm, "skip": {"kind": kind}}})
    torch.manual_seed(0)
    return SkipNet(cfg.model, 16, 10).eval()


# --- lesion --------------------------------------------------------------------------------------

def test_removing_a_branch_equals_zeroing_its_output(trained):
    run = lesion.load_run(trained["identity"])
    x = run.splits.x_test
    for u, unit in enumerate(run.model.units):
        # oracle: the unmodified forward, with the unit's last block made to output zeros
        handle = run.model.blocks[unit.blocks[-1]].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        try:
            expected = run.model(x)
        finally:
            handle.remove()
        assert torch.allclose(lesion.forward_lesioned(run.model, x, {u}), expected, atol=1e-6)
        assert not torch.allclose(lesion.forward_lesioned(run.model, x, {u}), run.model(x), atol=1e-4)
    assert torch.allclose(lesion.forward_lesioned(run.model, x, set()), run.model(x))


def test_removing_a_plain_unit_passes_its_input_through(trained):
    run = lesion.load_run(trained["none"])
    x = run.splits.x_test
    handle = run.model.blocks[2].register_forward_hook(lambda m, inputs, out: inputs[0])
    try:
        expected = run.model(x)
    finally:
        handle.remove()
    assert torch.allclose(lesion.forward_lesioned(run.model, x, {2}), expected, atol=1e-6)


def test_removing_a_highway_unit_closes_its_gate():
    model = _model("gated")
    x = torch.randn(64, 16)
    got = lesion.forward_lesioned(model, x, {1})
    gate = model.skips["1"].gate
    with torch.no_grad():  # oracle: T = sigmoid(-1e4) = 0 exactly, so the unit carries x
        gate.weight.zero_()
        gate.bias.fill_(-1e4)
    assert torch.allclose(got, model(x), atol=1e-6)


def test_rezero_and_projection_keep_the_shortcut():
    for kind in ("rezero", "projection"):
        model = _model(kind, width=[16, 16, 24, 24])  # unit 2 changes width: its shortcut is P(x)
        x = torch.randn(32, 16)
        handle = model.blocks[2].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        expected = model(x)
        handle.remove()
        assert torch.allclose(lesion.forward_lesioned(model, x, {2}), expected, atol=1e-6), kind


def test_a_scaled_shortcut_keeps_its_scale_when_the_branch_is_removed():
    for skip in ({"kind": "identity", "scale": 0.5}, {"kind": "projection", "project": "always", "scale": 0.5}):
        cfg = config.from_dict({"model": {"depth": 4, "width": 16, "skip": skip}})
        torch.manual_seed(0)
        model = SkipNet(cfg.model, 16, 10).eval()
        x = torch.randn(32, 16)
        handle = model.blocks[1].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
        expected = model(x)  # oracle: the branch outputs zeros, so the unit gives scale * P(x)
        handle.remove()
        assert torch.allclose(lesion.forward_lesioned(model, x, {1}), expected, atol=1e-6), skip


def test_dense_units_have_their_outputs_zeroed_and_unbypassed_units_are_plain():
    model = _model("dense")
    x = torch.randn(32, 16)
    handle = model.blocks[1].register_forward_hook(lambda m, i, out: torch.zeros_like(out))
    expected = model(x)
    handle.remove()
    assert torch.allclose(lesion.forward_lesioned(model, x, {1}), expected, atol=1e-6)
    cfg = config.from_dict({"model": {"depth": 4, "width": 16, "skip": {"kind": "identity", "every": 2}}})
    every_other = SkipNet(cfg.model, 16, 10)
    assert [lesion.removal(every_other, u) for u in range(4)] == ["branch", "whole", "branch", "whole"]


def test_a_plain_unit_that_changes_width_cannot_be_removed():
    model = _model("none", width=[16, 16, 24, 24])
    assert [lesion.removal(model, u) for u in range(4)] == ["whole", "whole", None, "whole"]
    with pytest.raises(ValueError):
        lesion.forward_lesioned(model, torch.randn(4, 16), {2})


def test_lesion_cli_on_a_run_and_on_a_comparison_folder(trained):
    r = cli("lesion", trained["identity"], "--drop", "3", "--samples", "2", check=0)
    assert "branch" in r.stdout
    with open(trained["identity"] / "lesion.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["k"]) for r in rows] == [0, 1, 1, 1, 1, 2, 2, 3, 3]
    # the intact row is the run's own final evaluation
    final = json.loads((trained["identity"] / "summary.json").read_text())["final_test_acc"]
    assert float(rows[0]["test_acc"]) == pytest.approx(final, abs=1e-6)
    assert (trained["identity"] / "plots" / "lesion.png").stat().st_size > 0

    folder = trained["identity"].parent.parent
    cli("lesion", folder, check=0)
    assert (folder / "plots" / "lesion.png").stat().st_size > 0
    assert (trained["none"] / "lesion.csv").exists()
    bad = cli("lesion", trained["none"], "--drop", "9", check=2)
    assert bad.stderr.startswith("error:") and "--drop" in bad.stderr
    (trained["none"] / "checkpoints" / "last.pt").rename(trained["none"] / "last.pt.away")
    try:
        bad = cli("lesion", trained["none"], check=2)
        assert "checkpoints/last.pt" in bad.stderr
    finally:
        (trained["none"] / "last.pt.away").rename(trained["none"] / "checkpoints" / "last.pt")


# --- shattering ----------------------------------------------------------------------------------

def test_points_that_share_a_config_name_are_labelled_by_their_folders(trained, tmp_path):
    import shutil

    sweep = tmp_path / "sweep-x"
    for point in ("depth=4,seed=0", "depth=4,seed=1"):   # a sweep's points keep their base config's name
        shutil.copytree(trained["identity"], sweep / point)
    got = lesion.study(sweep)
    assert [m.label for m in got.members] == ["depth=4,seed=0 (skip: identity)", "depth=4,seed=1 (skip: identity)"]


def test_shattering_matches_a_direct_computation_on_a_two_layer_net():
    cfg = config.from_dict({"model": {"depth": 1, "width": 7, "skip": {"kind": "none"}}})
    torch.manual_seed(3)
    model = SkipNet(cfg.model, 5, 10).double()
    a, b = torch.randn(5, dtype=torch.float64) * 3, torch.randn(5, dtype=torch.float64) * 3

    # oracle in numpy: f(x) = head(W2 relu(W1 (Win x + bin) + b1) + b2)[0], gradient by the chain rule
    P = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    Win, bin_, W1, b1, W2 = P["input.weight"], P["input.bias"], P["blocks.0.fc1.weight"], P["blocks.0.fc1.bias"], \
        P["blocks.0.fc2.weight"]
    wh = P["head.weight"][0]
    an, bn = a.numpy(), b.numpy()
    g = []
    for t in np.linspace(0, 1, 256):
        z = W1 @ (Win @ (an + t * (bn - an)) + bin_) + b1
        grad_x = Win.T @ (W1.T @ ((z > 0) * (W2.T @ wh)))
        g.append(grad_x @ (bn - an))
    g = np.array(g)
    assert len(np.unique(np.round(g, 9))) > 2  # the line crosses kinks: the oracle is not trivial
    expected = np.corrcoef(g[:-1], g[1:])[0, 1]

    got = shatter.line_gradients(model, a, b)
    assert np.allclose(got.detach().numpy(), g, atol=1e-10)
    assert shatter.correlations(model, [(a, b)])[0] == pytest.approx(expected, abs=1e-10)


def test_neighbour_correlation_of_known_sequences():
    assert shatter.neighbour_correlation(torch.arange(10.0)) == pytest.approx(1.0)
    assert shatter.neighbour_correlation(torch.tensor([1.0, -1.0] * 8)) == pytest.approx(-1.0)
    assert math.isnan(shatter.neighbour_correlation(torch.ones(8)))


def test_shatter_cli(tmp_path, tiny_config):
    r = cli("shatter", tiny_config, "model.norm=batchnorm", "--depths", "1,4", "--seeds", "1", "--pairs", "2",
                "--out", tmp_path, check=0)
    folder = Path(r.stdout.strip().splitlines()[-1])
    with open(folder / "shatter.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 1 * 2  # kinds x depths x seeds x pairs
    with open(folder / "shatter-lags.csv") as f:
        lags = list(csv.DictReader(f))
    assert len(lags) == len(rows) * len(shatter.LAGS)
    # lag 1 of shatter-lags.csv is shatter.csv's correlation
    ones = [float(r["correlation"]) for r in lags if r["lag"] == "1"]
    assert ones == pytest.approx([float(r["correlation"]) for r in rows])
    assert (folder / "plots" / "shatter.png").stat().st_size > 0
    bad = cli("shatter", tiny_config, "--depths", "1,x", "--out", tmp_path, check=2)
    assert bad.stderr.startswith("error:") and "--depths" in bad.stderr
    bad = cli("shatter", tiny_config, "--kinds", "none,identty", "--out", tmp_path, check=2)
    assert "did you mean" in bad.stderr
    bad = cli("shatter", tiny_config, "--seeds", "0", "--out", tmp_path, check=2)
    assert bad.stderr.startswith("error: --seeds")
    assert len([p for p in tmp_path.iterdir() if "shatter" in p.name]) == 1  # bad calls leave no folder


@pytest.mark.parametrize("norm,init,plain_shatters", [
    ("none", "default", False), ("none", "kaiming", False), ("batchnorm", "default", True),
    ("batchnorm", "kaiming", True)])
def test_shatter_help_says_what_is_observed_and_under_which_settings(tmp_path, norm, init, plain_shatters):
    """The help's claims, measured: at 16 blocks a plain net with batch norm is near white noise and identity
    skips are not; without a norm, at either init, a plain net stays smooth."""
    help_text = cli("shatter", "--help", check=0).stdout
    assert "batch norm" in help_text and "default init" in help_text and "Plain nets shatter" not in help_text
    cfg = config.load(write_config(tmp_path / "c.yaml", {"model.width": 64, "model.norm": norm, "model.init": init,
                                                         "data.input_dim": 32}))
    from skipexp.core import data

    rows = shatter.probe(cfg, [16], ["none", "identity"], 2, 4, data.load(cfg.data))
    got = {kind: float(np.mean([r["correlation"] for r in rows if r["kind"] == kind])) for kind in ("none", "identity")}
    if plain_shatters:
        assert abs(got["none"]) < 0.3 and got["identity"] > 0.5, got
    else:
        assert got["none"] > 0.8, got


# --- signal-propagation theory -------------------------------------------------------------------

WIDE = 512
TOLERANCE = 0.2  # measured / predicted within 20% at width 512 and depth 6 (seen: within ~12%)


@pytest.mark.parametrize("init,kind,activation,scale,order", [
    ("kaiming", "none", "relu", 1.0, "post"), ("default", "none", "relu", 1.0, "post"),
    ("xavier", "none", "tanh", 1.0, "post"), ("kaiming", "identity", "relu", 1.0, "post"),
    ("kaiming", "identity", "relu", 0.5, "post"),
    # the fair baselines: chi = 1 per plain block
    ("critical", "none", "relu", 1.0, "post"), ("critical", "none", "tanh", 1.0, "post"),
    ("orthogonal-critical", "none", "tanh", 1.0, "post"), ("looks-linear", "none", "relu", 1.0, "post"),
    ("critical", "none", "relu", 1.0, "pre"), ("kaiming", "identity", "relu", 1.0, "pre")])
def test_theory_matches_measurement_on_a_wide_net(init, kind, activation, scale, order):
    skip = {"kind": kind} if kind == "none" else {"kind": kind, "scale": scale}
    cfg = config.from_dict({"model": {"depth": 6, "width": WIDE, "init": init, "activation": activation,
                                      "order": order, "skip": skip}})
    torch.manual_seed(0)
    model = SkipNet(cfg.model, 32, 10)
    x, y = torch.randn(256, 32), torch.randint(0, 10, (256,))
    predicted, _ = theory.predict(model, theory.input_mean_square(model, x))
    measured = theory.measure(model, x, y)
    assert measured[0] / predicted[0] == pytest.approx(1.0, abs=TOLERANCE)
    # and the prediction itself is the closed form where there is one (ReLU: E[phi'^2] = 1/2)
    # and a shortcut scale * x adds scale^2 per unit: sqrt((scale^2 + chi)^6)
    closed = {("kaiming", "none", "post"): 2.0 ** 3, ("kaiming", "identity", "post"): (scale ** 2 + 2.0) ** 3,
              ("default", "none", "post"): 18.0 ** -3,
              # critical ReLU: sqrt 2 into the ReLU, 1 after it; pre-activation: the input's ReLU halves chi
              # once more, which the next block's fc2 (feeding that ReLU) makes up: chi = 1 per block inside
              ("critical", "none", "post"): 1.0, ("looks-linear", "none", "post"): 1.0,
              ("critical", "none", "pre"): 1.0 / math.sqrt(2.0)}
    if (init, kind, order) in closed and activation == "relu":
        assert predicted[0] == pytest.approx(closed[(init, kind, order)], rel=0.1)


def test_rezero_at_init_passes_gradients_unchanged():
    model = _model("rezero", width=64)
    predicted, _ = theory.predict(model, 1.0)
    measured = theory.measure(model, torch.randn(32, 16), torch.randint(0, 10, (32,)))
    assert predicted == [1.0] * 5
    assert measured == pytest.approx([1.0] * 5, abs=1e-6)


def test_validate_theory_cli(tiny_config):
    r = cli("validate", tiny_config, "model.skip.kind=none", "--theory", check=0)
    assert "predicted" in r.stdout and "chi per block" in r.stdout


def test_no_prediction_where_the_theory_does_not_apply():
    assert "norm" in theory.why_not(_model("identity", norm="layernorm"))
    assert "gated" in theory.why_not(_model("gated"))
    assert theory.why_not(_model("projection")) is None


def test_a_members_seed_is_dropped_from_its_label():
    assert lesion.without_seed("net=residual,seed=0 (skip: identity)") == "net=residual (skip: identity)"
    assert lesion.without_seed("seed=2,depth=4") == "depth=4"
    assert lesion.without_seed("plain-seed1 (skip: none)") == "plain (skip: none)"
    assert lesion.without_seed("seedling") == "seedling"


def test_lesion_of_a_sweep_draws_each_net_once_over_its_seeds(tmp_path, monkeypatch):
    from conftest import cli

    write_config(tmp_path / "base.yaml", {"train.steps": 3})
    (tmp_path / "s.yaml").write_text("name: s\nbase: base.yaml\ngrid:\n  model.skip.kind: [none, identity]\n"
                                     "  seed: [0, 1]\n")
    cli("sweep", tmp_path / "s.yaml", "--out", tmp_path / "runs", check=0)
    drawn = []
    real = lesion.plot
    monkeypatch.setattr(lesion, "plot", lambda curves, out, title, chance=None, formats=("png",):
                        drawn.append((curves, title)) or real(curves, out, title, chance, formats))
    study = lesion.study(tmp_path / "runs" / "sweep-s")
    assert len(study.members) == 4 and study.overlay.is_file()
    curves, title = drawn[-1]  # the overlay: one line per kind, each the rows of its two seeds
    assert [label for label, _ in curves] == ["skip.kind=identity", "skip.kind=none"]  # folders' order
    by_dir = {m.run_dir.name: m.rows for m in study.members}
    assert curves[0][1] == [by_dir["skip.kind=identity,seed=0"], by_dir["skip.kind=identity,seed=1"]]
    assert title == "sweep-s (synthetic, 2 seeds each)"
    assert [lesion.readable(label) for label, _ in curves] == ["identity skip", "plain (no skip)"]
