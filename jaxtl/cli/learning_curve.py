"""`jaxtl learning-curve`: a grid of fractions x strategies x seeds, each cell trained to convergence."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from jaxtl.cli.common import add_distributed_args, start_distributed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "learning-curve",
        help="test error against training-set size per strategy, over seeds, at convergence",
        description="Train every cell of fractions x strategies x seeds to convergence (early stopping on a "
        "validation set drawn from the pool, best weights kept, --max-epochs cap), test each on "
        "all of --test, and write OUT/results.json, OUT/results.md (mean and spread over seeds, "
        "verdict against scratch at the largest fraction) and OUT/learning_curve.png. Resumable: "
        "the same command again, or --resume OUT alone, skips finished cells and resumes an interrupted "
        "one; the fractions, strategies, seeds and --max-epochs may grow between runs, other settings may not.",
    )
    _add_pool_args(p)
    _add_grid_args(p)
    _add_convergence_args(p)
    _add_training_args(p)
    _add_run_args(p)
    add_distributed_args(p)
    p.set_defaults(func=run, parser=p, resume_may_change=RESUME_MAY_CHANGE)


# flags a resumed grid may change: the grid grows, the cap rises, the order and the devices are free
RESUME_MAY_CHANGE = (
    "fractions",
    "strategies",
    "seeds",
    "max_epochs",
    "first",
    "max_cells",
    "n_devices",
)


def _add_run_args(p) -> None:
    """The run folder, resuming from it alone, and a settings file."""
    p.add_argument("--out", default=None, help="run folder: run_config.yaml, grid_config.json, cells/, results.*")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue a grid from RUN_DIR/run_config.yaml alone; flags given with it must agree with the "
        "saved run, except --fractions, --strategies, --seeds, --max-epochs (the grid may grow), --first, "
        "--max-cells and --devices",
    )
    p.add_argument("--config", default=None, help="YAML/JSON settings (a run's run_config.yaml); flags win")
    p.add_argument(
        "--status",
        action="store_true",
        help="print where the grid in --out (or --resume RUN_DIR) stands: each cell finished, training "
        "(and where), interrupted or pending, with its epochs and errors; trains and writes nothing",
    )
    p.add_argument(
        "--import-cells",
        nargs="+",
        default=[],
        metavar="RESULTS_JSON",
        help="results.json of this grid run elsewhere (another machine, a lost run folder): its finished "
        "cells are taken into --out and not trained again; the file's settings must be this grid's",
    )


def _add_pool_args(p) -> None:
    """The "data" group: foundation, pool, test set, batch size, label keys."""
    g = p.add_argument_group("data")
    g.add_argument(
        "--foundation",
        help="jaxtl model folder, mace-torch .model file (converted "
        "once into OUT/foundation) or a released model's name; scratch cells use its architecture",
    )
    g.add_argument("--train", help="the pool: subsets and the validation set are drawn from it")
    g.add_argument("--test", help="test structures; every cell is tested on all of them")
    g.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of the pool held out per seed for early stopping (default 0.1)",
    )
    g.add_argument("--batch-size", type=int, default=10, help="structures per batch (default 10)")
    g.add_argument("--energy-key", default="REF_energy", help="info key of total energies (eV)")
    g.add_argument("--forces-key", default="REF_forces", help="arrays key of forces (eV/A)")
    g.add_argument("--stress-key", default="REF_stress", help="info key of stress (eV/A^3)")
    g.add_argument("--head", default=None, help="head of a multi-head foundation")


def _add_grid_args(p) -> None:
    """Fractions x strategies x seeds, and which cells run first."""
    g = p.add_argument_group("grid")
    g.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.2, 0.5, 1.0],
        help="shares of the pool's training part (default 0.05 0.1 0.2 0.5 1)",
    )
    g.add_argument(
        "--strategies",
        nargs="+",
        default=["scratch", "f5"],
        help="scratch, fN (mace-torch --freeze N: f0 trains everything, f5 freezes embedding and "
        "interactions, f6 also the products), lora, magnitude, replay, or '+'-joined parts "
        "(default scratch f5)",
    )
    g.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds 0..n-1: each draws the validation set, the nested "
        "subsets, the initialisation and the data order (default 3)",
    )
    g.add_argument(
        "--first",
        nargs="+",
        default=[],
        metavar="FRACTION:STRATEGY[:SEED]",
        help="run these cells before the others, in this order: every seed, or the one seed "
        "given, e.g. 0.1:f5 1:scratch:0 1:f0:0",
    )
    g.add_argument("--max-cells", type=int, default=None, help="train at most this many cells, then stop")


def _add_convergence_args(p) -> None:
    """Early stopping and the plateau schedule."""
    g = p.add_argument_group("convergence")
    g.add_argument(
        "--patience",
        type=int,
        default=20,
        help="stop after this many epochs without a lower validation loss (default 20)",
    )
    g.add_argument(
        "--min-rel-improvement",
        type=float,
        default=0.01,
        help="a lower validation loss resets the patience only when it is below the last one that "
        "did by more than this fraction (default 0.01)",
    )
    g.add_argument("--max-epochs", type=int, default=400, help="cap on epochs, reported when hit (default 400)")
    g.add_argument(
        "--scheduler-patience",
        type=int,
        default=5,
        help="epochs without improvement before the lr is multiplied by --lr-factor (default 5)",
    )
    g.add_argument("--lr-factor", type=float, default=0.8, help="plateau lr factor (default 0.8)")


def _add_training_args(p) -> None:
    """Learning rates, dtype, EMA, loss weights, E0s, freezing count, LoRA rank."""
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, default=0.005, help="learning rate of fine-tuning (default 0.005)")
    g.add_argument("--scratch-lr", type=float, default=0.01, help="learning rate of scratch (default 0.01)")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="default float32")
    g.add_argument("--no-ema", action="store_true", help="keep the raw weights, not an EMA (decay 0.99)")
    g.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of energy per atom (default 1)")
    g.add_argument("--forces-weight", type=float, default=100.0, help="loss weight of forces (default 100)")
    g.add_argument(
        "--e0s",
        default="average",
        help="E0s of each cell: average (least squares on its subset; default), estimated or foundation",
    )
    g.add_argument("--counting", choices=["mace", "paper"], default="mace", help="counting of fN (default mace)")
    g.add_argument("--lora-rank", type=int, default=None, help="rank of the LoRA strategies (default 4)")


def config_from_args(args):
    from jaxtl.learning_curve import (
        ConvergenceSettings,
        DataSettings,
        GridSettings,
        LearningCurveConfig,
        TrainSettings,
    )

    return LearningCurveConfig(
        DataSettings(
            foundation=args.foundation,
            train_file=args.train,
            test_file=args.test,
            valid_fraction=args.valid_fraction,
            batch_size=getattr(args, "global_batch_size", args.batch_size),  # per device after start_distributed
            energy_key=args.energy_key,
            forces_key=args.forces_key,
            stress_key=args.stress_key,
            head=args.head,
        ),
        GridSettings(fractions=tuple(args.fractions), strategies=tuple(args.strategies), seeds=args.seeds),
        ConvergenceSettings(
            patience=args.patience,
            min_rel_improvement=args.min_rel_improvement,
            max_epochs=args.max_epochs,
            scheduler_patience=args.scheduler_patience,
            lr_factor=args.lr_factor,
        ),
        TrainSettings(
            lr=args.lr,
            scratch_lr=args.scratch_lr,
            dtype=args.dtype,
            ema=not args.no_ema,
            energy_weight=args.energy_weight,
            forces_weight=args.forces_weight,
            e0s=args.e0s,
            counting=args.counting,
            lora_rank=args.lora_rank,
        ),
    )


def parse_first(items) -> list[tuple]:
    """--first's items as (fraction, strategy) or (fraction, strategy, seed)."""
    entries = []
    for item in items:
        parts = item.split(":")
        try:
            if len(parts) not in (2, 3) or not parts[1]:
                raise ValueError
            entry = (float(parts[0]), parts[1], *(int(p) for p in parts[2:]))
        except ValueError:
            raise ValueError(
                f"--first {item!r}: expected FRACTION:STRATEGY or FRACTION:STRATEGY:SEED, e.g. 0.1:f5 or 1:f0:0"
            ) from None
        entries.append(entry)
    return entries


def run(args) -> int:
    import jax

    if args.status:
        from jaxtl.learning_curve import LearningCurveConfig
        from jaxtl.learning_curve.grid import CONFIG_FILE
        from jaxtl.learning_curve.status import grid_status, status_table

        rows = grid_status(args.out)  # FileNotFoundError when OUT holds no grid
        cap = LearningCurveConfig.load(Path(args.out) / CONFIG_FILE).convergence.max_epochs
        print(status_table(rows, cap))
        return 0
    if args.test is None:
        raise ValueError("learning-curve needs --test (every cell is tested on all of it)")
    start_distributed(args)  # before any JAX computation; --batch-size stays the global batch
    from jaxtl.settings import save_run_config
    from jaxtl.train.distributed import is_primary

    if is_primary():
        save_run_config(args, args.parser)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.learning_curve import learning_curve
    from jaxtl.learning_curve.report import verdict_lines

    command = "jaxtl " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or sys.argv[1:]))
    result = learning_curve(
        config_from_args(args),
        args.out,
        command=command,
        first=parse_first(args.first),
        max_cells=args.max_cells,
        n_devices=args.n_devices,
        import_from=args.import_cells,
    )
    print(
        f"{len(result.records)} of {result.summary['n_cells']['grid']} cells finished "
        f"({len(result.computed)} trained now"
        + (f", {len(result.held_elsewhere)} left to the other processes training them" if result.held_elsewhere else "")
        + f"); table in {result.out_dir / 'results.md'}"
    )
    print("\n".join(verdict_lines(result.summary)))
    return 0
