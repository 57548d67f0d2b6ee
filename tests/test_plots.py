"""Plots are drawn from a run folder alone, including a diverged one full of NaN and inf."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import train_in_process

from skipexp.core import config
from skipexp.rundir import files, runio
from skipexp.views import layout, plots


def fake_run(tmp_path, diverge: bool):
    run = tmp_path / ("diverged" if diverge else "ok")
    run.mkdir()
    (run / "config.yaml").write_text(config.dump(config.from_dict({"model": {"depth": 3, "width": 4}})))
    files.write_json(run / "meta.json", {"tool": "skipexp", "name": run.name, "status": "diverged" if diverge
                                         else "completed", **({"diverged_at_step": 30} if diverge else {})})
    layers, bounds = ["input", "blocks.0.fc1", "blocks.0.fc2", "head"], ["h0", "h1", "h2", "h3"]
    logs = {"metrics": runio.CsvLog(run / "metrics.csv", runio.METRICS_COLUMNS),
            "eval": runio.CsvLog(run / "eval.csv", runio.EVAL_COLUMNS),
            "grad": runio.CsvLog(run / "grad_norms.csv", ["step"] + layers),
            "act_grad": runio.CsvLog(run / "act_grad_norms.csv", ["step"] + bounds),
            "act": runio.CsvLog(run / "act_norms.csv", ["step"] + bounds)}
    for step in range(1, 31):
        bad = diverge and step >= 29
        loss = (math.nan if step == 30 else math.inf) if bad else 2.3 * 0.9 ** step
        logs["metrics"].write([step, 0, loss, 0.1 + step / 40, 0.05, 1.0, step * 0.1])
        logs["grad"].write([step] + [math.inf if bad else 10.0 ** -(3 - i) for i in range(4)])
        logs["act_grad"].write([step] + [0.0 if bad else 10.0 ** -(3 - i) for i in range(4)])
        logs["act"].write([step] + [1.0] * 4)
        if step % 10 == 0:
            logs["eval"].write([step, 0, loss, 0.2 + step / 50])
    for log in logs.values():
        log.close()
    return run


@pytest.mark.parametrize("diverge", [False, True])
def test_plot_run_writes_three_pngs(tmp_path, diverge):
    run = fake_run(tmp_path, diverge)
    paths = plots.plot_run(run)
    assert [p.name for p in paths] == ["loss.png", "grad_norms.png", "grad_heatmap.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_depth_ticks_are_evenly_spaced_and_end_at_the_last_where_they_can():
    for n in (1, 2, 5, 12, 13, 14, 18, 21, 26, 42, 62, 65, 129):
        for k in (10, 12):
            ticks = plots._ticks(n, k)
            assert ticks[0] == 0 and ticks == sorted(set(ticks)) and ticks[-1] <= n - 1
            assert len({b - a for a, b in zip(ticks, ticks[1:])}) <= 1, (n, k, ticks)  # every gap the same
            assert len(ticks) <= k + 1 or ticks == list(range(n)) and n <= 2 * k + 2, (n, k, ticks)
    # where n - 1 has a divisor near (n - 1) / k, the last row (the head) is labelled too
    for n in (13, 21, 26, 65, 129):
        assert plots._ticks(n)[-1] == n - 1


def test_log_ticks_are_readable():
    assert layout.log_ticks(0.13, 2.3) == [0.2, 0.5, 1, 2]
    wide = layout.log_ticks(3e-7, 40)
    assert 2 <= len(wide) <= 8 and all(3e-7 <= t <= 40 for t in wide)
    assert all(math.log10(t) == round(math.log10(t)) for t in wide)  # whole decades only
    widest = layout.log_ticks(5e-14, 0.6)  # every other decade, on the even ones: 1e-12 ... 0.01, not 0.1, 0.001
    assert len(widest) <= 8 and [round(math.log10(t)) for t in widest] == list(range(-12, 0, 2))
    narrow = layout.log_ticks(0.13, 0.17)
    assert len(narrow) >= 2 and all(0.13 <= t <= 0.17 for t in narrow)
    assert layout.log_ticks(0.0, 1.0) == [] and layout.log_ticks(math.nan, 1.0) == []


def _lines(ax, zeros: bool = False):
    return [ln for ln in ax.get_lines() if (ln.get_gid() == plots.ZERO_GID) == zeros]


def test_loss_plot_draws_raw_values_and_smooths_without_startup_bias(tmp_path):
    run = fake_run(tmp_path, diverge=False)
    fig = plots.loss_figure(run)
    ax_l, ax_a = fig.axes[:2]
    loss = [r["train_loss"] for r in runio.read_csv(run / "metrics.csv")]
    raw, smoothed = (next(ln for ln in ax_l.get_lines() if ln.get_label() == label)
                     for label in ("train, each logged batch", "train, smoothed"))
    assert list(raw.get_ydata()) == pytest.approx(loss) and raw.get_alpha() < 0.5
    assert smoothed.get_ydata()[0] == pytest.approx(loss[0])  # starts where the loss starts, not biased
    assert smoothed.get_ydata()[-1] < 1.5 * loss[-1]           # and keeps up with it (the old EMA: 10x)
    assert ax_a.get_ylabel() == "accuracy (%)" and ax_a.get_ylim() == (0, 102)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "chance accuracy (10%)" in legend and "chance loss (ln 10 = 2.30)" in legend
    plt.close(fig)


def test_zero_gradients_are_drawn_and_marked(tmp_path):
    # ReZero's branches get exactly 0 at step 1 (alpha = 0 cuts them off): the oracle for "exactly zero"
    run = train_in_process(tmp_path, "rezero", {"model.depth": 2, "model.skip.kind": "rezero", "train.epochs": 1})
    rows = runio.read_csv(run / "grad_norms.csv")
    cols = [c for c in rows[0] if c != "step"]
    zero_cols = [i for i, c in enumerate(cols) if rows[0][c] == 0.0]
    assert [cols[i] for i in zero_cols] == ["blocks.0.fc1", "blocks.0.fc2", "blocks.1.fc1", "blocks.1.fc2"]

    fig = plots.grad_norms_figure(run)
    marks = _lines(fig.axes[0], zeros=True)
    assert marks and sorted({int(x) for ln in marks for x in ln.get_xdata()}) == zero_cols
    assert any("exactly 0" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)

    fig = plots.heatmap_figure(run)
    zero_img = next(im for im in fig.axes[0].get_images() if im.get_gid() == plots.ZERO_GID)
    shown = ~np.ma.getmaskarray(zero_img.get_array())                      # (layers, steps)
    expected = np.array([[r[c] == 0.0 for r in rows] for c in cols])
    assert shown.any() and (shown == expected).all()
    assert any("exactly 0" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)


def test_heatmaps_use_one_absolute_scale(tmp_path):
    from skipexp.views import plots_compare

    ok, div = fake_run(tmp_path, diverge=False), fake_run(tmp_path, diverge=True)
    figs = [plots.heatmap_figure(ok), plots_compare.heatmaps_figure([("ok", ok), ("diverged", div)])]
    assert not figs[0].legends  # nothing off the scale: no note about it
    assert "not finite (inf or nan)" in [t.get_text() for t in figs[1].legends[0].get_texts()]
    for fig in figs:
        images = [im for ax in fig.axes for im in ax.get_images() if im.get_gid() != plots.ZERO_GID]
        assert images and all(im.get_clim() == plots.GRAD_LOG10_RANGE for im in images)
        plt.close(fig)


def test_members_with_different_layers_line_up_by_layer(tmp_path):
    from skipexp.views import plots_compare

    short = {"model.depth": 3, "train.epochs": 1}
    plain = train_in_process(tmp_path, "plain", {**short, "model.skip.kind": "none"})
    gated = train_in_process(tmp_path, "gated", {**short, "model.skip.kind": "gated"})
    plain_cols, gated_cols = ([c for c in runio.read_csv(r / "grad_norms.csv")[0] if c != "step"]
                              for r in (plain, gated))
    assert len(plain_cols) < len(gated_cols) and set(plain_cols) < set(gated_cols)
    fig = plots_compare.grad_profile_figure([("plain", plain), ("gated", gated)])
    ax = fig.axes[0]
    solid = [ln for ln in _lines(ax) if ln.get_linestyle() == "-"]  # each member's last step, in member order
    assert list(solid[0].get_xdata()) == [gated_cols.index(c) for c in plain_cols]  # plain's head over gated's
    assert list(solid[1].get_xdata()) == list(range(len(gated_cols)))
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "head"
    plt.close(fig)
    # the same by name alone, with block 10 after block 9 (not after block 1) and the skips after their block
    plain_names = ["input"] + [f"blocks.{i}.fc{j}" for i in range(12) for j in (1, 2)] + ["head"]
    gated_names = ["input"] + [n for i in range(12) for n in (f"blocks.{i}.fc1", f"blocks.{i}.fc2",
                                                            f"skips.{i}.gate")] + ["head"]
    union = sorted(set(plots.layer_keys(plain_names)) | set(plots.layer_keys(gated_names)))
    assert [k[-1] for k in union] == gated_names


def _sweep_rows(diverged: bool, seeds: int):
    rows = []
    for kind, losses in (("none", [2.3, 2.3, 2.29]), ("identity", [0.13, 0.5, 1.2])):
        for depth, loss in zip((2, 4, 8), losses):
            for seed in range(seeds):
                bad = diverged and kind == "identity" and depth == 8
                rows.append({"model.depth": depth, "model.skip.kind": kind, "seed": seed, "point": "p",
                             "status": "diverged" if bad else "completed",
                             "final_train_loss": 5e4 if bad else loss * (1 + seed / 10),
                             "final_test_acc": 0.1 if kind == "none" else 0.9})
    return rows


@pytest.mark.parametrize("blocks,label", [(["conv", "conv"], "depth (blocks of two 3×3 convolutions)"),
                                          (["mlp", "mlp"], "depth (blocks of 2 Linear layers)"),
                                          (["mlp", "conv"], "depth (blocks)")])
def test_a_sweeps_depth_axis_names_the_blocks_its_points_are_made_of(tmp_path, monkeypatch, blocks, label):
    from skipexp.views import plots_sweep

    rows = []
    for i, (block, depth) in enumerate(zip(blocks, (3, 9))):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / files.CONFIG).write_text(f"model: {{block: {block}, depth: {depth}}}\n")
        rows.append({"model.depth": depth, "seed": 0, "point": f"p{i}", "status": "completed",
                     "final_train_loss": 1.0, "final_test_acc": 0.5})
    drawn = []
    real = plots_sweep.sweep_figure
    monkeypatch.setattr(plots_sweep, "sweep_figure", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    plots_sweep.plot_sweep(rows, {"model.depth": [3, 9], "seed": [0]}, tmp_path / "plots")
    assert [ax.get_xlabel() for ax in drawn[0].axes[:2]] == [label, label]


def test_sweep_plot_marks_divergence_and_says_only_what_occurs():
    from skipexp.views import plots_sweep

    grid = {"model.depth": [2, 4, 8], "model.skip.kind": ["none", "identity"], "seed": [0, 1]}
    fig = plots_sweep.sweep_figure(_sweep_rows(True, 2), grid, "model.depth", ["model.skip.kind"], "s", 0.1)
    ax_l, ax_a = fig.axes[:2]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"a diverged seed (no value; at the top)", "one seed", "chance (10%)"} <= set(legend)
    assert ax_l.get_ylim()[1] < 10  # the diverged 5e4 does not stretch the axis
    identity = next(c for c in ax_l.containers if c.get_label() == "identity skip")
    assert [round(math.log2(x)) for x in identity.lines[0].get_xdata()] == [1, 2]  # nor is it joined to the others
    # a diverged seed is a cross at the top of both panels, never a value (no 0 % accuracy)
    for ax in (ax_l, ax_a):
        cross = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
        assert len(cross) == 2 and all(round(math.log2(c.get_xdata()[0])) == 3 and list(c.get_ydata()) == [0.97]
                                       for c in cross)
    # every seed is a dot drawn in front of its mean's marker, beside it
    dots = [ln for ln in ax_a.get_lines() if ln.get_marker() == "."]
    means = [c.lines[0] for c in ax_a.containers]
    assert dots and min(d.get_zorder() for d in dots) > max(m.get_zorder() for m in means)
    assert all(d.get_xdata()[0] not in set(m.get_xdata()) for d in dots for m in means)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax_l.get_yticklabels() if t.get_text()]
    assert len(labels) >= 2 and "2" in labels, labels
    assert ax_a.get_ylabel() == "final test accuracy (%)" and ax_a.get_ylim() == (0, 102)
    assert max(max(m.get_ydata()) for m in means) == pytest.approx(90)   # accuracy 0.9 drawn as 90 %
    assert ax_l.get_xlabel() == "depth (blocks of 2 Linear layers)"
    plt.close(fig)

    fig = plots_sweep.sweep_figure(_sweep_rows(False, 1), {**grid, "seed": [0]}, "model.depth",
                                   ["model.skip.kind"], "s")
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["plain (no skip)", "identity skip"]
    plt.close(fig)


def test_ten_lines_differ_in_colour_marker_or_line_style_and_values_read_as_words():
    from skipexp.views import style

    looks = [tuple(style.look(i).values()) for i in range(10)]
    assert len(set(looks)) == 10 and len({m for _, m, _ in looks}) == 10
    assert style.words({"model.skip.kind": "none"}) == "plain (no skip)"
    assert style.words({"model.skip.kind": "identity", "model.skip.scale": 0.5}) == "scaled, λ = 0.5"
    assert style.words({"model.skip.kind": "projection", "model.skip.project": "always",
                        "model.skip.project_init": "identity"}) == "projection, P = I at init"
    assert style.words({"model.skip.kind": "none", "model.init": "critical", "model.depth": 8}) == \
        "plain (no skip), critical init, 8 blocks"


@pytest.mark.parametrize("diverge", [False, True])
def test_run_plots_are_whole_pngs_of_their_figure_size(tmp_path, diverge):
    from PIL import Image

    run = fake_run(tmp_path, diverge)
    sizes = {"loss.png": (11, 4.8), "grad_norms.png": (13, 4.6), "grad_heatmap.png": (12, 5.0)}
    for path in plots.plot_run(run):
        with Image.open(path) as im:
            im.load()  # decodes every row: a truncated file raises here
            assert im.size == tuple(round(v * layout.DPI) for v in sizes[path.name])
        assert path.read_bytes()[-12:-4] == b"\x00\x00\x00\x00IEND"
    assert sorted(p.name for p in (run / "plots").iterdir()) == sorted(sizes)  # no temporary file left


def assert_laid_out(fig):
    """Every text on the page, legends and the suptitle off the axes and each other, neighbouring panels'
    tick labels and axis labels clear of each other's axes."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    # each axes with its drawn tick labels, axis labels and title; the suptitle; the legends
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes] + \
            [a.get_window_extent(renderer) for a in fig.texts + fig.legends]
    for box in boxes:
        assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and page.y0 - 1 <= box.y0 and box.y1 <= page.y1 + 1
    titles = [t.get_window_extent(renderer) for t in fig.texts]
    for legend in fig.legends:
        frame = legend.get_window_extent(renderer)
        # nor their tick labels and axis labels
        assert not any(frame.overlaps(ax.get_tightbbox(renderer)) for ax in fig.axes)
        assert not any(frame.overlaps(t) for t in titles)
    for ax in fig.axes:
        own = ax.get_tightbbox(renderer)
        assert not any(own.overlaps(t) for t in titles), ax.get_title()
        for other in fig.axes:
            if other is not ax and other not in ax.child_axes:
                assert not own.overlaps(other.get_window_extent(renderer)) or \
                    ax.get_label() == "<colorbar>" or other.get_label() == "<colorbar>"


@pytest.mark.parametrize("diverge", [False, True])
@pytest.mark.parametrize("figure", ["loss_figure", "grad_norms_figure", "heatmap_figure"])
def test_fixed_margins_keep_every_text_inside_and_legends_off_the_axes(tmp_path, diverge, figure):
    assert_laid_out(getattr(plots, figure)(fake_run(tmp_path, diverge)))


@pytest.mark.parametrize("members", [2, 4])
@pytest.mark.parametrize("figure", ["loss_figure", "grad_profile_figure", "heatmaps_figure"])
def test_comparison_figures_keep_every_text_inside_and_legends_off_the_axes(tmp_path, members, figure):
    from skipexp.views import plots_compare

    ok, div = fake_run(tmp_path, diverge=False), fake_run(tmp_path, diverge=True)
    # members of several seeds get the longest labels: "name (mean of 2 seeds; diverged): last step 30"
    runs = [(f"member-{i}", [ok, div] if i % 2 else ok) for i in range(members)]
    fig = getattr(plots_compare, figure)(runs)
    assert fig.canvas.manager is None  # drawn straight by Agg: pyplot holds on to nothing
    assert fig.get_layout_engine() is None
    assert_laid_out(fig)


@pytest.mark.parametrize("numeric", [True, False])
def test_sweep_figures_keep_every_text_inside_and_legends_off_the_axes(tmp_path, numeric):
    from skipexp.views import plots_sweep

    grid = {"model.depth": [2, 4, 8], "model.skip.kind": ["none", "identity"], "seed": [0, 1]}
    xkey, other = ("model.depth", "model.skip.kind") if numeric else ("model.skip.kind", "model.depth")
    assert_laid_out(plots_sweep.sweep_figure(_sweep_rows(True, 2), grid, xkey, [other], "sweep s", 0.1))
    fake_run(tmp_path, diverge=False), fake_run(tmp_path, diverge=True)
    configs = [({"model.depth": 2}, [{"point": "ok", "status": "completed"}]),
               ({"model.depth": 4}, [{"point": "ok", "status": "completed"},
                                     {"point": "diverged", "status": "diverged", "diverged_at_step": 30}])]
    fig = plots_sweep.curves_figure(configs, {"model.depth": [2, 4], "seed": [0, 1]}, tmp_path, "sweep s", "synthetic")
    assert fig.get_layout_engine() is None
    assert_laid_out(fig)
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()   # evaluations on the loss curves' step axis


def test_log_axes_label_plain_numbers_not_mathtext(tmp_path):
    fig = plots.grad_norms_figure(fake_run(tmp_path, False))
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert labels == ["0.001", "0.01", "0.1", "1"]  # norms 1e-3 .. 1 in the fake run
    assert layout.log_label(2e-5) == "2e-05" and layout.log_label(0.5) == "0.5" and layout.log_label(1e-8) == "10⁻⁸"


def test_figures_come_in_every_format_the_config_asks_for(tmp_path):
    """log.plot_formats: an SVG and a PDF beside each PNG, each a whole file of its format, no temporary left."""
    run = fake_run(tmp_path, diverge=False)
    cfg = config.from_dict({"model": {"depth": 3, "width": 4}, "log": {"plot_formats": ["png", "svg", "pdf"]}})
    (run / "config.yaml").write_text(config.dump(cfg))
    plots.plot_run(run)
    names = sorted(p.name for p in (run / "plots").iterdir())
    assert names == sorted(f"{n}.{x}" for n in ("loss", "grad_norms", "grad_heatmap") for x in ("png", "svg", "pdf"))
    assert (run / "plots" / "loss.pdf").read_bytes()[:5] == b"%PDF-"
    assert b"<svg" in (run / "plots" / "loss.svg").read_bytes()[:500]


def test_lesion_is_drawn_as_the_change_in_points_from_each_seeds_intact_model():
    from skipexp.views import plots_science

    def rows(intact, drops):
        return [{"k": 0, "removed": "-", "test_acc": intact}] + [
            {"k": 1, "removed": str(u), "test_acc": intact - d} for u, d in enumerate(drops)]

    curves = [("residual", [rows(0.86, [0.001, 0.02]), rows(0.84, [0.003, 0.004])]),
              ("plain", [rows(0.82, [0.7, 0.72])])]
    fig = plots_science.lesion_figure(curves, "t", chance=0.1)
    ax1 = fig.axes[0]
    means = {ln.get_label(): list(ln.get_ydata()) for ln in ax1.get_lines() if not ln.get_label().startswith("_")}
    assert means["residual (2 seeds)"] == pytest.approx([-0.2, -1.2])      # points, from each seed's own intact
    assert means["plain"] == pytest.approx([-70, -72])
    assert ax1.get_yscale() == "symlog" and "percentage points" in ax1.get_ylabel()
    floors = [ln.get_ydata()[0] for ln in ax1.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(floors) == pytest.approx([-75, -72])                      # chance, from each net's intact
    assert_laid_out(fig)


def test_shatter_is_drawn_on_a_linear_axis_with_intervals_and_anchored_references():
    from skipexp.views import plots_science

    rows = [{"state": "init", "kind": k, "depth": d, "seed": s, "pair": 0, "correlation": c + s / 100}
            for k, cs in (("none", (0.9, 0.4, -0.08)), ("identity", (0.95, 0.8, 0.6)))
            for d, c in zip((1, 4, 16), cs) for s in range(3)]
    lags = [{**r, "lag": lag, "correlation": r["correlation"] / lag} for r in rows for lag in (1, 2, 4)]
    fig = plots_science.shatter_figure(rows, lags, "t")
    ax, ax_lag = fig.axes[:2]
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] < -0.09    # the negative mean drawn where it is
    bars = {c.get_label(): c for c in ax.containers}
    assert list(bars["plain (no skip)"].lines[0].get_ydata()) == pytest.approx([0.91, 0.41, -0.07])
    refs = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label().startswith(("2^-L", "1/√L"))}
    two, root = (next(ln for k, ln in refs.items() if k.startswith(p)) for p in ("2^-L", "1/√L"))
    assert two.get_ydata()[0] == pytest.approx(0.91) and root.get_ydata()[0] == pytest.approx(0.96)   # anchored
    assert "lag" in ax_lag.get_xlabel() and len(ax_lag.get_lines()) >= 4
    assert_laid_out(fig)
