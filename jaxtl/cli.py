"""The `jaxtl` command: one entry point, a thin subcommand per capability.

    jaxtl convert IN.model OUT_DIR       mace-torch file -> jaxtl model folder (verified)
    jaxtl convert NAME [OUT_DIR]        a released foundation model, downloaded and converted once
    jaxtl models                        the released foundation models jaxtl knows by name
    jaxtl export MODEL_DIR OUT.model    jaxtl model folder -> mace-torch .model file (verified)
    jaxtl train --train F --out DIR     train a new MACE from scratch
    jaxtl finetune --foundation M ...   frozen transfer learning of a foundation model
    jaxtl eval --model DIR --data F     errors of a model on labelled structures
    jaxtl demo                          the whole workflow on data it makes itself
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--train", required=True, help="training structures (extended XYZ or any ASE format), or a "
                   "folder written by `jaxtl prepare` (train only: streamed from disk)")
    g.add_argument("--valid", default=None, help="validation structures (default: --valid-fraction of --train)")
    g.add_argument("--valid-fraction", type=float, default=0.1, help="fraction of --train held out (default 0.1)")
    g.add_argument("--test", default=None, help="test structures, evaluated at the end")
    g.add_argument("--energy-key", default="REF_energy", help="info key of total energies in eV (default REF_energy, "
                   "falling back to the ASE calculator's energy)")
    g.add_argument("--forces-key", default="REF_forces", help="arrays key of forces in eV/A (default REF_forces)")
    g.add_argument("--stress-key", default="REF_stress", help="info key of stress in eV/A^3 (default REF_stress)")
    g.add_argument("--batch-size", type=int, default=10, help="structures per optimiser step over all devices "
                   "(the global batch; a multiple of their number; default 10)")
    g.add_argument("--max-force", type=float, default=None, help="drop structures with |F| above this (eV/A)")
    g.add_argument("--train-fraction", type=float, default=1.0, help="train on this fraction only (default 1)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=100, help="number of epochs (default 100)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01, mace-torch's)")
    g.add_argument("--scheduler", default="plateau", choices=["plateau", "exponential", "cosine", "constant"],
                   help="learning-rate schedule (default plateau: x0.8 after 50 epochs without improvement)")
    g.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of energy per atom (default 1)")
    g.add_argument("--forces-weight", type=float, default=100.0, help="loss weight of forces (default 100)")
    g.add_argument("--stress-weight", type=float, default=1.0, help="loss weight of stress (default 1)")
    g.add_argument("--loss", default="weighted", help="weighted | stress | virials | huber | universal | l1l2")
    g.add_argument("--ema", action="store_true", help="evaluate and save an EMA of the weights (decay 0.99)")
    g.add_argument("--stage-two", action="store_true", help="mace's stage two (SWA) in the last quarter of training")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="training dtype (default float32)")
    g.add_argument("--backend", default="xla", choices=["xla", "cueq"],
                   help="xla (default) or cueq: NVIDIA cuEquivariance kernels (pip install jaxtl[cueq])")
    g.add_argument("--seed", type=int, default=123, help="seed of the split, init and data order (default 123)")
    g.add_argument("--out", required=True, help="run folder (checkpoints, logs, model/)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run in --out exactly")
    g.add_argument("--config", default=None, help="YAML/JSON file of settings; flags given explicitly win")
    _add_distributed_args(p)


def _add_distributed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices and processes (data parallel; see examples/slurm_train.sh)")
    g.add_argument("--devices", type=int, default=None, help="devices of this process to train on (default 1); "
                   "with --distributed, every device of every process")
    g.add_argument("--distributed", action="store_true", help="join a multi-process job on JAX's runtime "
                   "(jax.distributed): start one process per host (or per GPU) with the same arguments; the "
                   "settings below are detected from SLURM, Open MPI or Cloud TPU when not given")
    g.add_argument("--coordinator-address", default=None, help="HOST:PORT of process 0's coordinator")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes in the job")
    g.add_argument("--process-id", type=int, default=None, help="rank of this process, 0 .. N-1")
    g.add_argument("--heartbeat-timeout", type=int, default=100, help="seconds after which a silent process is "
                   "declared dead and the job stops (default 100); restart all with --resume")


def _start_distributed(args) -> None:
    """Join the multi-process job if asked (before any JAX computation), count the devices
    of the step into `args.n_devices` and split `args.batch_size`, the global batch, over them."""
    explicit = (args.coordinator_address, args.num_processes, args.process_id)
    args.n_devices = args.devices or 1
    if args.distributed or any(v is not None for v in explicit):
        import jax

        from jaxtl.train.distributed import DistributedConfig, initialize

        initialize(DistributedConfig(*explicit, heartbeat_timeout_s=args.heartbeat_timeout))
        if jax.process_index() != 0:  # one copy of the progress messages; warnings from every process
            logging.getLogger("jaxtl").setLevel(logging.WARNING)
        if args.devices not in (None, jax.device_count()):
            raise ValueError(f"--devices {args.devices}: a job of {jax.process_count()} processes trains on all "
                             f"their {jax.device_count()} devices")
        args.n_devices = jax.device_count()
    from jaxtl.train.distributed import per_device_batch_size

    args.batch_size = per_device_batch_size(args.batch_size, args.n_devices)


def _train_config(args):
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.loss import LossConfig
    from jaxtl.train.optimizer import OptimizerConfig
    from jaxtl.train.stage_two import StageTwoConfig

    return TrainConfig(
        max_num_epochs=args.epochs, seed=args.seed, dtype=args.dtype, ema=args.ema, backend=args.backend,
        loss=LossConfig(loss=args.loss, energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                        stress_weight=args.stress_weight),
        optimizer=OptimizerConfig(lr=args.lr, scheduler=args.scheduler),
        stage_two=StageTwoConfig(enabled=args.stage_two), n_devices=getattr(args, "n_devices", 1),
    )


def _data_config(args):
    from jaxtl.graph.io import DataKeys
    from jaxtl.train.data import DataConfig

    keys = DataKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    return DataConfig(train_file=args.train, valid_file=args.valid, valid_fraction=args.valid_fraction,
                      test_file=args.test, keys=keys, batch_size=args.batch_size, valid_batch_size=args.batch_size,
                      max_force=args.max_force, train_fraction=args.train_fraction, seed=args.seed)


def _apply_config_file(parser, args, argv):
    """Settings from --config, overridden by flags given on the command line."""
    if not args.config:
        return args
    import yaml

    with open(args.config) as f:
        values = yaml.safe_load(f) or {}
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--")}
    for key, value in values.items():
        key = key.replace("-", "_")
        if not hasattr(args, key):
            parser.error(f"{args.config}: unknown setting {key!r}")
        if key not in given:
            setattr(args, key, value)
    return args


def cmd_convert(args) -> int:
    from pathlib import Path

    from jaxtl import foundations
    from jaxtl.convert.convert import convert_file
    from jaxtl.convert.torch_reader import ConversionError

    by_name = not Path(args.model).exists() and not Path(args.model).suffix
    try:
        if by_name:  # a released model: download and convert into the cache once, then copy out
            if args.out_dir is None and (args.dtype or args.head):
                raise foundations.FoundationError("--dtype and --head need OUT_DIR (the cached copy keeps them all)")
            folder = foundations.model_dir(args.model, cache=args.cache, sha256=args.sha256,
                                           check=not args.no_verify)
            if args.out_dir is not None:
                foundations.export(folder, args.out_dir, dtype=args.dtype, head=args.head)
            print(f"wrote {args.out_dir or folder}")
        elif args.out_dir is None:
            raise foundations.FoundationError(f"{args.model}: give OUT_DIR, the folder to write the model into")
        else:
            convert_file(args.model, args.out_dir, dtype=args.dtype, head=args.head, check=not args.no_verify)
    except (ConversionError, NotImplementedError, foundations.FoundationError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args) -> int:
    from jaxtl.convert.export import export_file
    from jaxtl.convert.torch_reader import ConversionError
    from jaxtl.model_io import ModelFileError

    try:
        export_file(args.model_dir, args.out, dtype=args.dtype, head=args.head)
    except (ConversionError, ModelFileError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_models(args) -> int:
    from jaxtl import foundations

    print(foundations.describe(args.cache))
    return 0


def cmd_train(args) -> int:
    _start_distributed(args)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.train.run import train_from_scratch

    model = dict(r_max=args.r_max, num_bessel=args.num_bessel, hidden_irreps=args.hidden_irreps,
                 max_ell=args.max_ell, correlation=(args.correlation,) * args.num_interactions,
                 num_interactions=args.num_interactions, radial_MLP=tuple(args.radial_mlp),
                 MLP_irreps=args.mlp_irreps)
    from pathlib import Path

    if Path(args.train).is_dir():  # a prepared set (`jaxtl prepare`): streamed from disk
        from jaxtl.train.stream import PreparedData, train_from_prepared

        data = PreparedData(args.train, args.valid, args.valid_fraction, args.batch_size, args.batch_size, args.seed)
        result = train_from_prepared(data, args.out, model=model, train_config=_train_config(args),
                                     resume=args.resume)
    else:
        result = train_from_scratch(_data_config(args), args.out, model=model, train_config=_train_config(args),
                                    resume=args.resume)
    print(json.dumps({split: m.get("all") for split, m in result.metrics.items()}, indent=2))
    print(f"compilations: {result.n_compiles}; model written to {args.out}/model")
    return 0


def cmd_eval(args) -> int:
    from jaxtl.evaluate import evaluate_file

    metrics = evaluate_file(args.model, args.data, batch_size=args.batch_size, dtype=args.dtype,
                            backend=args.backend)
    print(json.dumps(metrics, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxtl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    cache_help = "cache of downloaded and converted foundation models (default: $JAXTL_CACHE, else ~/.cache/jaxtl)"
    p = sub.add_parser("convert", help="convert a mace-torch .model file and verify it against mace-torch")
    p.add_argument("model", help="mace-torch .model file (pickled ScaleShiftMACE or MACE), or the name of a "
                   "released foundation model (see `jaxtl models`), downloaded into --cache and converted once")
    p.add_argument("out_dir", nargs="?", default=None,
                   help="output model folder (needed for a file; for a name, default: the cached folder)")
    p.add_argument("--cache", default=None, help=cache_help)
    p.add_argument("--sha256", default=None, help="expected sha256 (hex) of the downloaded file (default: the "
                   "registry's, when known; the zip CRCs and length are always checked)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None, help="saved dtype (default: the model's)")
    p.add_argument("--head", default=None, help="keep only this head of a multi-head model")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against mace-torch")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="write a jaxtl model as a mace-torch .model file, verified against mace-torch")
    p.add_argument("model_dir", help="jaxtl model folder (config.json + variables/)")
    p.add_argument("out", help="mace-torch .model file to write (a pickled MACE / ScaleShiftMACE)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None, help="dtype of the file (default: the model's)")
    p.add_argument("--head", default=None, help="write only this head of a multi-head model")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the released foundation models `convert NAME` accepts")
    p.add_argument("--cache", default=None, help=cache_help)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("train", help="train a MACE from scratch")
    _add_data_args(p)
    _add_train_args(p)
    g = p.add_argument_group("model")
    g.add_argument("--r-max", type=float, default=5.0, help="cutoff radius in A (default 5)")
    g.add_argument("--num-bessel", type=int, default=8, help="radial Bessel functions (default 8)")
    g.add_argument("--hidden-irreps", default="32x0e", help="node features, e.g. 128x0e+128x1o (default 32x0e)")
    g.add_argument("--max-ell", type=int, default=3, help="spherical harmonics degree (default 3)")
    g.add_argument("--correlation", type=int, default=3, help="body order - 1 of the product basis (default 3)")
    g.add_argument("--num-interactions", type=int, default=2, help="message-passing layers (default 2)")
    g.add_argument("--radial-mlp", type=int, nargs="+", default=[64, 64, 64], help="radial MLP widths")
    g.add_argument("--mlp-irreps", default="16x0e", help="hidden width of the last readout (default 16x0e)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="energy/force/stress errors of a model on a labelled file")
    p.add_argument("--model", required=True, help="jaxtl model folder")
    p.add_argument("--data", required=True, help="labelled structures")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default=None, choices=["float32", "float64"])
    p.add_argument("--backend", default="xla", choices=["xla", "cueq"], help="xla (default) or cueq (cuEquivariance)")
    p.set_defaults(func=cmd_eval)

    for module in ("jaxtl.finetune.cli", "jaxtl.demo", "jaxtl.distill.cli", "jaxtl.md.cli", "jaxtl.graph.prepare"):
        try:
            mod = __import__(module, fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return parser


def main(argv=None) -> int:
    if argv is None:  # the command line, not a call from Python: restart with huge pages
        from jaxtl import _allocator

        _allocator.restart_with_hugepages()
    argv = sys.argv[1:] if argv is None else argv
    _quiet_libraries()
    from jaxtl import _xla_flags

    _xla_flags.enable_compilation_cache()
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "config"):
        args = _apply_config_file(parser, args, argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
