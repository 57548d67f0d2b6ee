"""Science commands: lesion study and gradient shattering (``validate --theory`` lives with validate)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from skipexp.cli.app import app
from skipexp.cli.args import ConfigArg, OutOpt, OverridesArg, at_least_one, int_list, load_config
from skipexp.cli.console import download_progress, out_console
from skipexp.cli.render import print_lesion, print_shatter
from skipexp.core.errors import SkipexpError


@app.command(short_help="Remove units of a trained model; measure test accuracy.")
def lesion(
    run_dir: Annotated[Path, typer.Argument(
        help="A run folder, or a comparison/sweep folder whose member runs are lesioned and overlaid.",
        metavar="FOLDER", show_default=False)],
    drop: Annotated[int, typer.Option("--drop", metavar="K", help="Also remove random sets of 2..K units.")] = 1,
    samples: Annotated[int, typer.Option("--samples", metavar="N", help="Random sets per K.")] = 20,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the random sets.")] = 0,
    where: Annotated[Optional[str], typer.Option(
        "--where", metavar="KEY=VALUE,...", help="Of a folder of runs, only those whose folder names hold every "
        "KEY=VALUE (as sweep points are named), e.g. depth=50,net=highway.")] = None,
) -> None:
    """Remove units of a trained model at test time and measure test accuracy (lesion study).

    Each unit in turn loses its residual branch where it has a skip, or is removed whole where it has none;
    --drop K adds random sets of 2..K units. Writes lesion.csv and plots/lesion.png into the run folder.
    Of a sweep that chooses an axis per configuration (select), only the chosen configurations' points.

    Example: skipexp lesion runs/20260101-120000-skip --drop 4
    """
    from skipexp.science import lesion as lesion_mod

    at_least_one(drop=drop, samples=samples)
    words = [w.strip() for w in (where or "").split(",") if w.strip()]
    bad = [w for w in words if "=" not in w]
    if bad:
        raise SkipexpError(f"expects KEY=VALUE words separated by commas, got {bad[0]!r}", key="--where")
    study = lesion_mod.study(run_dir, drop=drop, samples=samples, seed=seed, progress=download_progress(),
                             on_member=print_lesion, where=words)
    if study.overlay is not None:
        out_console.print(str(study.overlay), soft_wrap=True)


@app.command(short_help="Gradient correlation along input lines against depth.")
def shatter(
    config: ConfigArg,
    overrides: OverridesArg = None,
    depths: Annotated[str, typer.Option(
        "--depths", metavar="D,D,...", help="Comma-separated depths (blocks).")] = "1,2,4,8,16,32",
    kinds: Annotated[str, typer.Option(
        "--kinds", metavar="KIND,...", help="Comma-separated skip kinds to compare.")] = "none,identity",
    seeds: Annotated[int, typer.Option("--seeds", metavar="N", help="Networks drawn per kind and depth.")] = 3,
    pairs: Annotated[int, typer.Option("--pairs", metavar="N", help="Lines (pairs of test inputs) per network.")] = 4,
    checkpoint: Annotated[Optional[Path], typer.Option(
        "--checkpoint", metavar="RUN_DIR", help="Also probe this trained run folder's model.")] = None,
    out: OutOpt = Path("runs"),
) -> None:
    """Correlation of gradients along a line in input space against depth, at init (shattered gradients).

    1 is a smooth gradient, 0 white noise. What shatters here is a plain net with batch norm: with
    model.norm=batchnorm (default or kaiming init) a plain net is at about 0 by 16 blocks while identity
    skips keep about 0.7. Without a norm, with PyTorch's default init (configs/skip.yaml) or kaiming, plain
    nets barely decay (about 0.97 and 0.90 at 16 blocks). Balduzzi et al.'s 2^-L is printed for reference,
    not fitted. Writes OUT/<time>-shatter-<name>/ with shatter.csv and plots/shatter.png.

    Example: skipexp shatter configs/papers/shatter.yaml --depths 1,2,4,8,16
    """
    from skipexp.core.registry import SKIPS

    # every argument is checked before torch is imported: a typo costs no wait
    at_least_one(seeds=seeds, pairs=pairs)
    cfg = load_config(config, overrides)
    depth_list = int_list(depths, "--depths")
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    for k in kind_list:
        SKIPS.check(k, "--kinds")
    for d in depth_list:  # the config's own checks (span must divide depth, ...) at every depth
        load_config(config, list(overrides or []) + [f"model.depth={d}"])

    from skipexp.science import shatter as shatter_mod

    print_shatter(shatter_mod.study(cfg, depth_list, kind_list, seeds, pairs, out, checkpoint, download_progress()))
