"""`jaxtl finetune`: transfer learning (freezing, adapters, replay) from the command line."""

from __future__ import annotations

import json

from jaxtl.cli.common import (
    add_data_args,
    add_train_args,
    check_fresh_run,
    data_config,
    parse_mapping,
    start_distributed,
    train_config,
)
from jaxtl.settings import save_run_config


def add_parser(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a foundation model with frozen layers",
        description="Fine-tune a MACE foundation model (jaxtl folder or mace-torch .model) on new data, "
        "with mace-torch's --freeze N, per-layer, pattern or soft freezing, equivariant LoRA or "
        "magnitude adapters, and pseudolabelled replay.",
    )
    p.add_argument(
        "--foundation",
        default=None,
        help="jaxtl model folder, mace-torch .model file "
        "(converted into OUT/foundation and verified), or a released model's name such as "
        "mace-mp-0-medium (see `jaxtl models`; downloaded and converted once into $JAXTL_CACHE)",
    )
    p.add_argument("--head", default=None, help="head of a multi-head foundation to fine-tune")
    _add_freezing_args(p)
    _add_strategy_args(p)
    add_data_args(p)
    add_train_args(p)
    p.set_defaults(func=run, parser=p)


def _add_freezing_args(p) -> None:
    """mace-torch's --freeze N, patterns, soft freezing, --dry-run."""
    g = p.add_argument_group("freezing")
    g.add_argument(
        "--freeze",
        type=int,
        default=None,
        help="mace-torch --freeze N: 1-4 embedding, 5 + interactions, 6 + products (only readouts "
        "train), 7 everything; 0 nothing (default: nothing)",
    )
    g.add_argument(
        "--counting",
        choices=["mace", "paper"],
        default="mace",
        help="'mace': upstream thresholds by name (default); 'paper': the arXiv 2502.15582 fork's "
        "child-module count (shifted by one for ZBL models; negative N freezes the last |N|)",
    )
    g.add_argument(
        "--freeze-pattern",
        action="append",
        default=[],
        help="glob over parameter paths to freeze, e.g. 'interactions_0*' (repeatable)",
    )
    g.add_argument(
        "--train-pattern",
        action="append",
        default=[],
        help="glob over parameter paths to train; with only train patterns everything else freezes",
    )
    g.add_argument(
        "--lr-factors",
        default=None,
        help='soft freezing, JSON: {"interactions_lr_factor": 0.1, "products_lr_factor": 0.5}',
    )
    g.add_argument("--dry-run", action="store_true", help="print which parameters train and stop")


def _add_strategy_args(p) -> None:
    """The strategy: LoRA and magnitude adapters, replay."""
    s = p.add_argument_group("strategy")
    s.add_argument(
        "--strategy",
        default="freeze",
        help="naive (everything trains) | freeze (the freezing options; default) | lora | magnitude | "
        "replay | replay+lora, or '+'-joined parts; adapters freeze the foundation's weights "
        "unless freezing options are given; the saved model is always merged",
    )
    s.add_argument("--lora-rank", type=int, default=None, help="LoRA rank r (default 4)")
    s.add_argument("--lora-alpha", type=float, default=None, help="LoRA scale alpha: W0 + (alpha/r) A B (default r)")
    s.add_argument(
        "--adapter-patterns",
        action="append",
        default=None,
        help="glob over parameter paths getting LoRA/magnitude adapters, e.g. 'interactions_*/linear/*' "
        "(repeatable; default LoRA: every 2-D weight at least r wide; magnitude: interactions' and "
        "products' linear)",
    )
    s.add_argument(
        "--replay-size",
        type=int,
        default=None,
        help="rattled copies of the training structures labelled by the foundation (default: as many "
        "as training structures, none when --replay-file is given)",
    )
    s.add_argument("--replay-weight", type=float, default=None, help="loss weight of each replay structure (default 1)")
    s.add_argument(
        "--replay-file",
        action="append",
        default=[],
        help="structures to label with the foundation and replay (repeatable)",
    )
    s.add_argument("--replay-rattle", type=float, default=None, help="displacement of the copies in A (default 0.05)")


def finetune_config(args):
    """The `FinetuneConfig` of the command line (bad settings fail here, before a run starts)."""
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig

    if args.freeze is not None and (args.freeze_pattern or args.train_pattern):
        raise ValueError("give either --freeze or --freeze-pattern/--train-pattern, not both")
    strategy = StrategyConfig(
        name=args.strategy,
        freeze=args.freeze,
        counting=args.counting,
        freeze_patterns=tuple(args.freeze_pattern),
        train_patterns=tuple(args.train_pattern),
        lr_factors=parse_mapping(args.lr_factors, "--lr-factors"),
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        adapter_patterns=args.adapter_patterns,
        replay_size=args.replay_size,
        replay_weight=args.replay_weight,
        replay_files=tuple(args.replay_file),
        replay_rattle=args.replay_rattle,
    )
    return FinetuneConfig(
        foundation=FoundationConfig(args.foundation, head=args.head),
        data=data_config(args),
        strategy=strategy,
        train=train_config(args),
        e0s=args.e0s,
    )


def run(args) -> int:
    start_distributed(args)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.finetune import finetune

    config = finetune_config(args)
    if not args.dry_run:
        check_fresh_run(args)
        save_run_config(args, args.parser)
    result = finetune(config, args.out, dry_run=args.dry_run, resume=args.resume)
    if result.train is not None:
        print(json.dumps({split: m.get("all") for split, m in result.train.metrics.items()}, indent=2))
        print(result.report.summary())
        print(
            f"frozen weights unchanged: {result.frozen_unchanged}; {result.steps_per_s:.2f} steps/s; "
            f"model written to {result.model_dir}"
        )
    return 0
