"""Every config and sweep file the project ships validates, and each paper reproduction's first point trains."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli

from skipexp.core import config as config_mod
from skipexp.core import yamlio
from skipexp.experiments.sweep import spec

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FILES = sorted(CONFIGS.rglob("*.yaml"))
SWEEPS = [p for p in FILES if "grid" in yamlio.read_yaml(p)]
RUN_CONFIGS = [p for p in FILES if p not in SWEEPS]
PAPERS = [p for p in SWEEPS if p.parent.name == "papers"]
FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist, which CI installs


def _id(p: Path) -> str:
    return str(p.relative_to(CONFIGS))


def test_the_papers_are_sweep_files():
    assert {p.stem for p in PAPERS} == {"highway", "degradation", "identity-mappings", "lesion", "conv-degradation"}


def test_libyaml_reads_every_shipped_file_and_override_as_the_python_parser_does():
    import yaml

    for path in FILES:
        text = path.read_text()
        assert yamlio.parse(text) == yaml.load(text, Loader=yaml.SafeLoader), path  # noqa: S506
    for value in ("64", "0.05", "1e-3", "1.0e-3", "[64, 32]", "{width: 8, skip: {kind: none}}", "none", "null",
                  "~", "yes", "off", "'0.1'", ".inf", "-.inf", "0x10", "010", "2024-01-01", "a: b", "[0,1,2]"):
        assert yamlio.parse(value) == yaml.load(value, Loader=yaml.SafeLoader), value  # noqa: S506


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=_id)
def test_every_run_config_validates(path):
    cli("validate", path, check=0)


@pytest.mark.parametrize("path", SWEEPS, ids=_id)
def test_every_sweep_file_lists_its_points(path, tmp_path):
    p = cli("sweep", path, "--list", "--out", tmp_path, check=0)
    assert p.stdout.startswith("# group 1 ")


@pytest.mark.parametrize("path", PAPERS, ids=_id)
def test_a_papers_first_point_trains_a_few_steps(path, tmp_path):
    sweep = spec.load(path)
    if sweep.grid.get("seed") is not None:
        assert len(sweep.grid["seed"]) >= 3, "a finding is stated over at least three seeds"
    first = spec.points(sweep, tmp_path)[0]
    if first.cfg.data.dataset == "fashion-mnist" and not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    words = first.argv[1:first.argv.index("--run-dir")]  # train BASE KEY=VALUE...
    run_dir = tmp_path / first.name
    small = ["train.steps=3", "data.train_size=256", "data.test_size=128", "log.eval_every=null",
             "log.train_eval_size=128"] + (["data.val_size=128"] if first.cfg.data.val_size else [])
    cli(*words, *small, "--run-dir", run_dir, check=0)
    want = first.cfg.to_dict()
    assert config_mod.load(run_dir / "config.yaml").to_dict() == {
        **want, "train": {**want["train"], "steps": 3},
        "data": {**want["data"], "train_size": 256, "test_size": 128,
                 **({"val_size": 128} if first.cfg.data.val_size else {})},
        "log": {**want["log"], "eval_every": None, "train_eval_size": 128}}
