"""`jaxtl eval`: a model's predictions on a file, and its errors per config_type where the
file has labels (as mace_eval_configs); over many files and prepared folders, on several
devices or processes, the errors per source and overall (`jaxtl.evaluate.evaluate_sources`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jaxtl.cli.common import add_distributed_args, start_distributed


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="predictions of a model on a file, and its errors per config_type "
        "where the file has labels (as mace_eval_configs)",
    )
    p.add_argument("--model", required=True, help="jaxtl model folder")
    p.add_argument(
        "--data",
        required=True,
        nargs="+",
        help="structures, labelled or not (REF_energy, REF_forces, "
        "REF_stress): one file, or several files and folders written by `jaxtl prepare` (errors per "
        "source and over all, streamed a batch at a time)",
    )
    p.add_argument(
        "--output",
        default=None,
        help="write the structures with the predictions to this file "
        "(extended XYZ; energy eV, forces eV/A, stress eV/A^3 as 9 values)",
    )
    p.add_argument(
        "--info-prefix",
        "--key-prefix",
        dest="info_prefix",
        default="MACE_",
        help="prefix of the predicted keys in --output (default MACE_: MACE_energy, MACE_forces, ...)",
    )
    p.add_argument("--json", action="store_true", help="print the errors as JSON instead of a table")
    p.add_argument(
        "--batch-size", type=int, default=16, help="structures per evaluation step over all devices (default 16)"
    )
    p.add_argument("--dtype", default=None, choices=["float32", "float64"])
    p.add_argument("--backend", default="xla", choices=["xla", "cueq"], help="xla (default) or cueq (cuEquivariance)")
    add_distributed_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    start_distributed(args)
    if len(args.data) > 1 or Path(args.data[0]).is_dir() or args.n_devices > 1:
        return run_sources(args)
    args.data = args.data[0]
    return run_file(args)


def run_sources(args) -> int:
    """Errors on many sources, sharded over the devices (and processes) of the job."""
    import jax

    from jaxtl.api import load_model
    from jaxtl.evaluate import error_table, evaluate_sources

    if args.output:
        raise SystemExit(
            "error: --output writes the predictions of one file; give one --data file, on one device, to write them"
        )
    loaded = load_model(args.model, dtype=args.dtype, backend=args.backend)
    per_source, overall = evaluate_sources(loaded, args.data, args.batch_size, n_devices=args.n_devices)
    if jax.process_index() != 0:
        return 0
    if args.json:
        print(json.dumps({"sources": per_source, "all": overall}, indent=2))
        return 0
    for source, metrics in per_source.items():
        print(f"{source}:\n{error_table(metrics)}\n")
    print(f"all {len(per_source)} sources:\n{error_table(overall)}")
    return 0


def run_file(args) -> int:
    from jaxtl.api import load_model
    from jaxtl.evaluate import error_table, evaluate_and_predict, write_predictions
    from jaxtl.graph.io import read_configurations

    loaded = load_model(args.model, dtype=args.dtype, backend=args.backend)
    configs = read_configurations(args.data)
    stress = any(c.stress is not None for c in configs) or (None if args.output else False)
    metrics, predictions = evaluate_and_predict(loaded, configs, args.batch_size, stress=stress)
    if args.output:
        write_predictions(args.data, predictions, args.output, prefix=args.info_prefix)
        print(
            f"predictions written to {args.output} ({args.info_prefix}energy, {args.info_prefix}forces"
            + (f", {args.info_prefix}stress)" if "stress" in predictions[0] else ")"),
            file=sys.stderr,
        )
    labelled = any(m["n_graphs"] for m in metrics.values())
    if args.json:
        print(json.dumps(metrics, indent=2))
    elif labelled:
        print(error_table(metrics))
    else:
        print(f"{args.data}: no reference labels, no errors to show", file=sys.stderr)
    return 0
