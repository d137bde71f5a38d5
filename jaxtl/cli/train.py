"""`jaxtl train`: a new MACE from scratch (`jaxtl.train.run.train_from_scratch`), or streamed
from a folder written by `jaxtl prepare` (`jaxtl.train.stream.train_from_prepared`)."""

from __future__ import annotations

import json
from pathlib import Path

from jaxtl.cli.common import (
    add_data_args,
    add_train_args,
    check_fresh_run,
    data_config,
    start_distributed,
    train_config,
)
from jaxtl.settings import save_run_config


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a MACE from scratch")
    add_data_args(p)
    add_train_args(p)
    g = p.add_argument_group("model")
    g.add_argument("--r-max", type=float, default=5.0, help="cutoff radius in A (default 5)")
    g.add_argument("--num-bessel", "--num-radial-basis", type=int, default=8, help="radial basis functions (default 8)")
    g.add_argument("--num-cutoff-basis", type=int, default=5, help="order of the polynomial cutoff (default 5)")
    g.add_argument(
        "--radial-type",
        default="bessel",
        choices=["bessel", "gaussian", "chebyshev"],
        help="radial basis (default bessel)",
    )
    g.add_argument("--hidden-irreps", default="32x0e", help="node features, e.g. 128x0e+128x1o (default 32x0e)")
    g.add_argument("--max-ell", type=int, default=3, help="spherical harmonics degree (default 3)")
    g.add_argument("--correlation", type=int, default=3, help="body order - 1 of the product basis (default 3)")
    g.add_argument("--num-interactions", type=int, default=2, help="message-passing layers (default 2)")
    g.add_argument("--radial-mlp", type=int, nargs="+", default=[64, 64, 64], help="radial MLP widths")
    g.add_argument("--mlp-irreps", default="16x0e", help="hidden width of the last readout (default 16x0e)")
    g.add_argument(
        "--model-type",
        default="ScaleShiftMACE",
        choices=["ScaleShiftMACE", "MACE"],
        help="ScaleShiftMACE (default) or MACE (no scale and shift)",
    )
    g.add_argument(
        "--scaling",
        default="rms_forces_scaling",
        choices=["rms_forces_scaling", "std_scaling", "no_scaling"],
        help="scale/shift from the data (default rms_forces_scaling)",
    )
    p.set_defaults(func=run, parser=p)


def model_fields(args) -> dict:
    """The `MACEConfig` fields the command line sets."""
    return dict(
        r_max=args.r_max,
        num_bessel=args.num_bessel,
        num_polynomial_cutoff=args.num_cutoff_basis,
        radial_type=args.radial_type,
        hidden_irreps=args.hidden_irreps,
        max_ell=args.max_ell,
        correlation=(args.correlation,) * args.num_interactions,
        num_interactions=args.num_interactions,
        radial_MLP=tuple(args.radial_mlp),
        MLP_irreps=args.mlp_irreps,
        model_type=args.model_type,
    )


def run(args) -> int:
    start_distributed(args)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    model = model_fields(args)
    data, train = data_config(args), train_config(args)  # bad settings fail before anything is written
    prepared_set = Path(args.train).is_dir()  # a prepared set (`jaxtl prepare`): streamed from disk
    unsupported = [
        flag
        for flag, used in (
            ("--test", args.test),
            ("--config-type-weights", data.config_type_weights),
            ("--scaling", args.scaling != "rms_forces_scaling"),
        )
        if used
    ]
    if prepared_set and unsupported:
        raise SystemExit(
            f"error: {', '.join(unsupported)} cannot be used with a prepared set ({args.train}); "
            "evaluate a test set with `jaxtl eval --data FILE_OR_FOLDER ...`"
        )
    check_fresh_run(args)
    save_run_config(args, args.parser)
    if prepared_set:
        from jaxtl.train.stream import PreparedData, train_from_prepared

        prepared = PreparedData(
            args.train,
            args.valid,
            args.valid_fraction,
            data.batch_size,
            data.valid_batch_size,
            args.seed,
            max_force=args.max_force,
            train_fraction=args.train_fraction,
            e0s=args.e0s,
        )
        result = train_from_prepared(prepared, args.out, model=model, train_config=train, resume=args.resume)
    else:
        config = ScratchConfig(data, model, train, e0s=args.e0s, scaling=args.scaling)
        result = train_from_scratch(config, args.out, resume=args.resume)
    print(json.dumps({split: m.get("all") for split, m in result.metrics.items()}, indent=2))
    print(f"compilations: {result.n_compiles}; model written to {args.out}/model")
    return 0
