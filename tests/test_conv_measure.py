"""What skipexp measures, on conv nets: compare, report, diff, sweep, the Python API, lesion, shattering,
theory, landscape, sharpness, Jacobian and paths, through the CLI on a tiny comparison (TensorBoard reads
only the CSVs, the same for every model)."""
from __future__ import annotations

import copy
import csv

import pytest
import torch
import yaml
from conftest import cli, write_config
from test_conv import TINY_CONV

import skipexp
from skipexp.core import config as config_mod
from skipexp.core import data as data_mod
from skipexp.core import nets
from skipexp.science import lesion
from skipexp.training.checkpoint import load_checkpoint_file

pytestmark = pytest.mark.xdist_group("conv-measure")   # one worker trains the module fixture once

BASE = copy.deepcopy(TINY_CONV)
BASE["train"]["epochs"] = 2


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """A plain conv net (post order) against a pre-activation identity-skip one: runs/plain, runs/skip."""
    tmp = tmp_path_factory.mktemp("conv-measure")
    plain = write_config(tmp / "plain.yaml", {"name": "plain", "model.skip": {"kind": "none"}}, base=BASE)
    skip = write_config(tmp / "skip.yaml", {"name": "skip", "model.order": "pre"}, base=BASE)
    r = cli("compare", plain, skip, "--out", tmp / "runs", check=0)
    assert "act-grad h0/h_last" in r.stdout
    (folder,) = (tmp / "runs").iterdir()
    return folder


def trained(run_dir):
    cfg = config_mod.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
    splits = data_mod.load(cfg.data)
    m = nets.build(cfg, splits.input_dim, splits.num_classes)
    m.load_state_dict(load_checkpoint_file(run_dir / "checkpoints" / "last.pt")["model"])
    return m.eval(), splits


def test_a_comparison_logs_every_layer_and_boundary(comparison):
    skip = comparison / "runs" / "skip"
    grads = rows(skip / "grad_norms.csv")
    assert list(grads[0])[1:4] == ["input.conv", "blocks.0.conv1", "blocks.0.conv2"]
    assert list(grads[0])[-1] == "head.fc"
    assert list(rows(skip / "act_grad_norms.csv")[0]) == ["step", "h0", "h1", "h2", "h3"]
    assert (comparison / "plots" / "grad_norms.png").is_file()
    r = cli("diff", comparison / "plain", comparison / "skip", "--format", "md", check=0)
    assert "model.skip.kind" in r.stdout and "input.conv" in r.stdout
    assert cli("report", comparison, "--no-html", check=0).returncode == 0


def test_lesion_removes_branches_as_the_model_would(comparison):
    """Intact, forward_lesioned is the model's own forward (post order: act after the skip)."""
    plain = comparison / "runs" / "plain"
    model, splits = trained(plain)
    x = splits.x_test[:16]
    with torch.no_grad():
        assert torch.equal(lesion.forward_lesioned(model, x, set()), model(x))
    r = cli("lesion", comparison, check=0)
    assert "whole" in r.stdout and "cannot" in r.stdout      # plain: unit 0 bypassed, strided units cannot go
    got = rows(comparison / "runs" / "skip" / "lesion.csv")
    assert {g["how"] for g in got} >= {"intact", "branch"}


def test_shatter_and_theory(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", base=BASE)
    r = cli("shatter", cfg, "--depths", "3", "--kinds", "none,identity", "--seeds", 1, "--pairs", 2,
            "--out", tmp_path / "sh", check=0)
    assert "identity" in r.stdout
    r = cli("validate", cfg, "--theory", check=0)
    assert "no prediction: the mean-field theory here is for blocks of Linear layers" in r.stdout
    assert "singular values s of dh_i/dh_0" in r.stdout
    r = cli("validate", cfg, "--theory", "data.image_size=48", check=0)   # h0 too big for a Jacobian
    assert "measured" in r.stdout and "singular values" not in r.stdout


def test_mechanisms(comparison):
    cli("landscape", comparison, "--points", 3, "--samples", 32, check=0)
    cli("sharpness", comparison, "--samples", 32, "--iterations", 4, "--probes", 2, check=0)
    cli("jacobian", comparison, "--samples", 2, check=0)
    skip = comparison / "runs" / "skip"
    for name in ("landscape.csv", "hessian.csv", "jacobian.csv"):
        assert rows(skip / name), name
    r = cli("paths", comparison / "runs" / "plain")
    assert r.returncode == 2 and "model.order: a post-order conv block applies its act after the sum" in r.stderr
    cli("paths", skip, "--samples", 8, "--sets", 2, check=0)
    assert rows(skip / "paths.csv")


def test_sweep_stacks_conv_points_and_the_api_trains_them(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", base=BASE)
    cli("sweep", cfg, "model.skip.kind=none,identity", "seed=0,1", "train.steps=2", "--out", tmp_path / "sw",
        check=0)
    (sweep,) = (tmp_path / "sw").iterdir()
    summary = rows(sweep / "summary.csv")
    assert len(summary) == 4 and {s["status"] for s in summary} == {"completed"}
    meta = yaml.safe_load((sweep / "skip.kind=none,seed=1" / "meta.json").read_text())
    assert meta["vectorized"] is True and len(meta["trained_with"]) == 4
    runs = skipexp.train(cfg, {"train.steps": 2, "seed": [0, 1]}, out=tmp_path / "api", plots=False)
    assert [r.status for r in runs] == ["completed", "completed"]
    assert runs[0].summary["params"] > 0
