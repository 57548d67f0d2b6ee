"""TensorBoard HParams of a sweep, read back with TensorBoard's own reader: each point's swept values and
final metrics, the experiment in the sweep folder; written by the sweep's end when points wrote events as
they trained, and by `skipexp tensorboard SWEEP`, replacing (never adding to) what was there."""
import json

import pytest
from conftest import cli, write_config

from skipexp.views.tensorboard import HPARAM_METRICS, HPARAMS_SUFFIX

pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'skipexp[tensorboard]')")


def hparams_data(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    return ea, ea.PluginTagToContent(metadata.PLUGIN_NAME)


def test_every_point_has_its_values_and_final_metrics(tmp_path):
    from tensorboard.plugins.hparams import metadata

    base = write_config(tmp_path / "base.yaml", {"log.tensorboard": True, "log.html": False})
    out = tmp_path / "runs"
    cli("sweep", base, "model.skip.kind=none,identity", "seed=0,1", "--name", "h", "--out", out, "--list", check=0)
    cli("sweep", out / "sweep-h" / "sweep.yaml", "--group", "1", "--out", out, check=0)
    root = out / "sweep-h"
    cli("report", root, check=0)   # the sweep's end: its points wrote events, so it writes their hparams
    for again in (False, True):
        if again:
            cli("tensorboard", root, check=0)   # re-exports every run and writes the hparams anew
        points = sorted(p for p in root.iterdir() if p.name.startswith("skip.kind="))
        assert len(points) == 4
        for point in points:
            assert len(list(point.glob(f"*{HPARAMS_SUFFIX}"))) == 1
            ea, content = hparams_data(point)
            start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
            values = dict(pair.split("=") for pair in point.name.split(","))
            assert {k: v.string_value or v.number_value for k, v in start.hparams.items()} == \
                {"skip.kind": values["skip.kind"], "seed": float(values["seed"])}
            summary = json.loads((point / "summary.json").read_text())
            for field, tag in HPARAM_METRICS.items():
                (event,) = ea.Scalars(tag)
                assert event.value == pytest.approx(summary[field], rel=1e-6) and event.step == summary["steps"]
            assert "train/loss" in ea.Tags()["scalars"]   # the run's own events are still there
        _, content = hparams_data(root)
        experiment = metadata.parse_experiment_plugin_data(content[metadata.EXPERIMENT_TAG])
        infos = {h.name: h for h in experiment.hparam_infos}
        assert list(infos) == ["skip.kind", "seed"]
        assert [v.string_value for v in infos["skip.kind"].domain_discrete.values] == ["identity", "none"]
        assert [m.name.tag for m in experiment.metric_infos] == list(HPARAM_METRICS.values())
        assert len(list(root.glob(f"*{HPARAMS_SUFFIX}"))) == 1
