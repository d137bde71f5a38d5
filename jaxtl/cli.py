"""The `jaxtl` command: one entry point, a thin subcommand per capability.

    jaxtl convert IN.model OUT_DIR       mace-torch file -> jaxtl model folder (verified)
    jaxtl convert NAME [OUT_DIR]        a released foundation model, downloaded and converted once
    jaxtl models                        the released foundation models jaxtl knows by name
    jaxtl export MODEL_DIR OUT.model    jaxtl model folder -> mace-torch .model file (verified)
    jaxtl train --train F --out DIR     train a new MACE from scratch
    jaxtl finetune --foundation M ...   frozen transfer learning of a foundation model
    jaxtl eval --model DIR --data F     predictions (--output) and errors per config_type
    jaxtl learning-curve --foundation M --train POOL --test F --out DIR
                                        error against training-set size, per strategy and seed, at convergence
    jaxtl demo                          the whole workflow on data it makes itself
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

NO_CPU_TUNING = "--no-cpu-tuning"


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (mace-torch names and defaults)")
    g.add_argument("--train", default=None, help="training structures (extended XYZ, an ASE database .db, or any ASE "
                   "format); IsolatedAtom frames (one atom, config_type=IsolatedAtom) give E0s and are not trained "
                   "on; frames with only some labels are kept, the missing labels weigh 0; or a folder written "
                   "by `jaxtl prepare` (train only: streamed from disk)")
    g.add_argument("--valid", default=None, help="validation structures (default: --valid-fraction of --train)")
    g.add_argument("--valid-fraction", type=float, default=0.1, help="fraction of --train held out (default 0.1)")
    g.add_argument("--test", default=None, help="test structures, evaluated at the end")
    g.add_argument("--energy-key", default="REF_energy", help="info key of total energies in eV (default REF_energy, "
                   "falling back to the ASE calculator's energy)")
    g.add_argument("--forces-key", default="REF_forces", help="arrays key of forces in eV/A (default REF_forces)")
    g.add_argument("--stress-key", default="REF_stress", help="info key of stress in eV/A^3 (default REF_stress)")
    g.add_argument("--virials-key", default="REF_virials", help="info key of virials in eV (default REF_virials)")
    g.add_argument("--head-key", default="head", help="info key naming the head a structure trains (default head)")
    g.add_argument("--config-type-weights", default=None,
                   help='loss weight per config_type, JSON or a Python dict: \'{"Default": 1.0, "bulk": 2.0}\' '
                        "(types not named weigh 1; per-frame config_weight and config_{energy,forces,stress}_weight "
                        "info keys multiply it)")
    g.add_argument("--E0s", "--e0s", dest="e0s", default=None,
                   help="isolated-atom energies: average (least squares on the data), isolated (the IsolatedAtom "
                        "frames), estimated / foundation (finetune: fit the foundation's residual / keep its E0s), "
                        "a JSON file, or a dict by atomic number such as '{1: -13.6, 8: -2042.0}' (default: the "
                        "IsolatedAtom frames when --train has them, else average)")
    g.add_argument("--batch-size", type=int, default=10, help="structures per optimiser step over all devices "
                   "(the global batch; a multiple of their number; default 10)")
    g.add_argument("--valid-batch-size", type=int, default=None, help="structures per evaluation batch "
                   "(default: --batch-size)")
    g.add_argument("--max-force", type=float, default=None, help="drop structures with |F| above this (eV/A)")
    g.add_argument("--train-fraction", type=float, default=1.0, help="train on this fraction only (default 1)")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (mace-torch names and defaults, except EMA and stage two, on here)")
    g.add_argument("--epochs", type=int, default=100, help="number of epochs (default 100; mace's max_num_epochs)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01, mace-torch's)")
    g.add_argument("--scheduler", default="plateau", choices=["plateau", "exponential", "cosine", "constant"],
                   help="learning-rate schedule (default plateau: x--lr-factor after --scheduler-patience epochs "
                        "without improvement)")
    g.add_argument("--scheduler-patience", type=int, default=50, help="plateau scheduler patience (default 50)")
    g.add_argument("--lr-factor", type=float, default=0.8, help="plateau scheduler factor (default 0.8)")
    g.add_argument("--lr-scheduler-gamma", type=float, default=0.9993, help="exponential schedule factor per epoch")
    g.add_argument("--optimizer", default="adam", choices=["adam", "adamw"], help="optimiser (default adam)")
    g.add_argument("--weight-decay", type=float, default=5e-7, help="weight decay (default 5e-7)")
    g.add_argument("--amsgrad", action=argparse.BooleanOptionalAction, default=True, help="AMSGrad (default on)")
    g.add_argument("--clip-grad", type=float, default=10.0, help="max gradient norm (default 10)")
    g.add_argument("--patience", type=int, default=2048, help="stop after this many epochs without a better "
                   "validation loss (default 2048)")
    g.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of energy per atom (default 1)")
    g.add_argument("--forces-weight", type=float, default=100.0, help="loss weight of forces (default 100)")
    g.add_argument("--stress-weight", type=float, default=1.0, help="loss weight of stress (default 1)")
    g.add_argument("--virials-weight", type=float, default=1.0, help="loss weight of virials (default 1)")
    g.add_argument("--loss", default="weighted", help="weighted | forces_only | stress | virials | huber | universal "
                   "| l1l2 (default weighted)")
    g.add_argument("--huber-delta", type=float, default=0.01, help="delta of the Huber losses (default 0.01)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate and save an exponential moving average of the weights (default on; --no-ema: off)")
    g.add_argument("--ema-decay", type=float, default=0.99, help="EMA decay (default 0.99)")
    g.add_argument("--stage-two", "--swa", action=argparse.BooleanOptionalAction, default=True,
                   help="mace's stage two (--swa): energy-heavy loss weights and --stage-two-lr from "
                        "--start-stage-two on (default on; --no-stage-two or --no-swa: off)")
    g.add_argument("--start-stage-two", "--start-swa", type=int, default=None,
                   help="first stage-two epoch, 0-based (default: 60 %% of --epochs, so stage two runs over the "
                        "last 40 %%; mace-torch's default is 75 %%)")
    g.add_argument("--stage-two-lr", "--swa-lr", type=float, default=1e-3, help="stage-two learning rate "
                   "(default 1e-3)")
    for name, default in (("energy", 1000.0), ("forces", 100.0), ("stress", 10.0), ("virials", 10.0)):
        g.add_argument(f"--stage-two-{name}-weight", f"--swa-{name}-weight", type=float, default=default,
                       help=f"stage-two loss weight of {name} (default {default:g})")
    g.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="training dtype (default float32)")
    g.add_argument("--backend", default="xla", choices=["xla", "cueq"],
                   help="xla (default) or cueq: NVIDIA cuEquivariance kernels (pip install jaxtl[cueq])")
    g.add_argument("--seed", type=int, default=123, help="seed of the split, init and data order (default 123)")
    g.add_argument("--out", default=None, help="run folder (checkpoints, logs, run_config.yaml, model/)")
    g.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue an interrupted run exactly: --resume RUN_DIR alone restores every setting from "
                        "RUN_DIR/run_config.yaml (a flag that differs from the saved value is an error; --epochs "
                        "may be raised); plain --resume continues the run in --out")
    g.add_argument("--config", default=None,
                   help="YAML/JSON settings: a mace-torch run_train YAML (options jaxtl lacks are named and "
                        "ignored), or the run_config.yaml / train_config.yaml of a jaxtl run; flags win")
    g = p.add_argument_group("watching the run")
    g.add_argument("--quiet", action="store_true", help="no progress bars and no epoch lines on screen (batch "
                   "jobs); train.log and metrics.jsonl in --out still get every epoch")
    g.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="also write each epoch's scalars as TensorBoard events in DIR (pip install jaxtl[tensorboard])")
    g.add_argument("--wandb", default=None, metavar="PROJECT",
                   help="also log each epoch's scalars to this Weights & Biases project (pip install jaxtl[wandb])")
    _add_distributed_args(p)


def _parse_mapping(text, what: str) -> dict | None:
    """A dict from a mapping, a JSON string or a Python dict literal (never eval)."""
    import ast

    if text is None or isinstance(text, dict):
        return text
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(str(text))
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, dict):
            return value
    raise ValueError(f"{what} {text!r} cannot be read: expected a dict such as '{{\"Default\": 1.0}}'")


STAGE_TWO_AT = 0.6  # fraction of the epochs before stage two, when --start-stage-two is not given


def _stage_two_start(args) -> int | None:
    if not args.stage_two:
        return None
    if args.start_stage_two is not None:
        return int(args.start_stage_two)
    return max(1, int(STAGE_TWO_AT * args.epochs))


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

    args.global_batch_size = args.batch_size  # what the run's settings record
    args.batch_size = per_device_batch_size(args.batch_size, args.n_devices)


def _train_config(args):
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.loss import LossConfig
    from jaxtl.train.optimizer import OptimizerConfig
    from jaxtl.train.stage_two import StageTwoConfig

    return TrainConfig(
        max_num_epochs=args.epochs, patience=args.patience, seed=args.seed, dtype=args.dtype, ema=args.ema,
        ema_decay=args.ema_decay, backend=args.backend,
        progress_bar=not getattr(args, "quiet", False),
        loss=LossConfig(loss=args.loss, energy_weight=args.energy_weight, forces_weight=args.forces_weight,
                        stress_weight=args.stress_weight, virials_weight=args.virials_weight,
                        huber_delta=args.huber_delta),
        optimizer=OptimizerConfig(optimizer=args.optimizer, lr=args.lr, amsgrad=args.amsgrad,
                                  weight_decay=args.weight_decay, clip_grad=args.clip_grad, scheduler=args.scheduler,
                                  lr_factor=args.lr_factor, scheduler_patience=args.scheduler_patience,
                                  lr_scheduler_gamma=args.lr_scheduler_gamma),
        stage_two=StageTwoConfig(enabled=args.stage_two, start_epoch=_stage_two_start(args), swa_lr=args.stage_two_lr,
                                 energy_weight=args.stage_two_energy_weight,
                                 forces_weight=args.stage_two_forces_weight,
                                 stress_weight=args.stage_two_stress_weight,
                                 virials_weight=args.stage_two_virials_weight),
        n_devices=getattr(args, "n_devices", 1),
    )


def _data_keys(args):
    from jaxtl.graph.io import DataKeys

    return DataKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key,
                    virials=args.virials_key, head=args.head_key)


def _data_config(args):
    """The data settings; also checks --E0s, so a bad value fails before a run starts."""
    from jaxtl.train.data import DataConfig
    from jaxtl.train.e0s import parse_e0s

    if args.e0s is not None:
        parse_e0s(args.e0s)
    weights = _parse_mapping(args.config_type_weights, "--config-type-weights")
    return DataConfig(train_file=args.train, valid_file=args.valid, valid_fraction=args.valid_fraction,
                      test_file=args.test, keys=_data_keys(args), batch_size=args.batch_size,
                      valid_batch_size=args.valid_batch_size or args.batch_size, max_force=args.max_force,
                      train_fraction=args.train_fraction, seed=args.seed,
                      config_type_weights={str(k): float(v) for k, v in weights.items()} if weights else None)


def _apply_config_file(parser, args, argv):
    """Settings from --config and, on --resume, from the run folder (`jaxtl.settings`)."""
    from jaxtl.settings import apply_settings

    return apply_settings(parser, args, argv)


def save_run_config(args, sub) -> None:
    """Every setting of the command in OUT/run_config.yaml (`jaxtl.settings`)."""
    from jaxtl.settings import save_run_config as save

    save(args, sub)


def _check_fresh_run(args) -> None:
    """A new run must not start in a folder that holds one (its settings would be overwritten)."""
    from pathlib import Path

    if not args.resume and (Path(args.out) / "checkpoints" / "latest").exists():
        raise FileExistsError(f"{args.out} already holds checkpoints: use --resume {args.out} or a new --out")


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
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    model = dict(r_max=args.r_max, num_bessel=args.num_bessel, num_polynomial_cutoff=args.num_cutoff_basis,
                 radial_type=args.radial_type, hidden_irreps=args.hidden_irreps, max_ell=args.max_ell,
                 correlation=(args.correlation,) * args.num_interactions, num_interactions=args.num_interactions,
                 radial_MLP=tuple(args.radial_mlp), MLP_irreps=args.mlp_irreps, model_type=args.model_type)
    data, train_config = _data_config(args), _train_config(args)  # bad settings fail before anything is written
    _check_fresh_run(args)
    save_run_config(args, args.parser)
    if Path(args.train).is_dir():  # a prepared set (`jaxtl prepare`): streamed from disk
        from jaxtl.train.stream import PreparedData, train_from_prepared

        prepared = PreparedData(args.train, args.valid, args.valid_fraction, args.batch_size, args.batch_size,
                                args.seed)
        result = train_from_prepared(prepared, args.out, model=model, train_config=train_config, resume=args.resume)
    else:
        config = ScratchConfig(data, model, train_config, e0s=args.e0s, scaling=args.scaling)
        result = train_from_scratch(config, args.out, resume=args.resume)
    print(json.dumps({split: m.get("all") for split, m in result.metrics.items()}, indent=2))
    print(f"compilations: {result.n_compiles}; model written to {args.out}/model")
    return 0


def cmd_eval(args) -> int:
    from jaxtl.api import load_model
    from jaxtl.evaluate import error_table, evaluate_and_predict, write_predictions
    from jaxtl.graph.io import read_configurations

    loaded = load_model(args.model, dtype=args.dtype, backend=args.backend)
    configs = read_configurations(args.data)
    stress = any(c.stress is not None for c in configs) or (None if args.output else False)
    metrics, predictions = evaluate_and_predict(loaded, configs, args.batch_size, stress=stress)
    if args.output:
        write_predictions(args.data, predictions, args.output, prefix=args.info_prefix)
        print(f"predictions written to {args.output} ({args.info_prefix}energy, {args.info_prefix}forces"
              + (f", {args.info_prefix}stress)" if "stress" in predictions[0] else ")"), file=sys.stderr)
    labelled = any(m["n_graphs"] for m in metrics.values())
    if args.json:
        print(json.dumps(metrics, indent=2))
    elif labelled:
        print(error_table(metrics))
    else:
        print(f"{args.data}: no reference labels, no errors to show", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxtl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(NO_CPU_TUNING, action="store_true",
                        help="leave glibc's allocator, XLA_FLAGS and JAX's CPU dispatch as they are: no "
                        "jaxtl.configure_cpu() (slower on CPU, less memory kept; also JAXTL_NO_CPU_TUNING=1)")
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
    g.add_argument("--num-bessel", "--num-radial-basis", type=int, default=8,
                   help="radial basis functions (default 8)")
    g.add_argument("--num-cutoff-basis", type=int, default=5, help="order of the polynomial cutoff (default 5)")
    g.add_argument("--radial-type", default="bessel", choices=["bessel", "gaussian", "chebyshev"],
                   help="radial basis (default bessel)")
    g.add_argument("--hidden-irreps", default="32x0e", help="node features, e.g. 128x0e+128x1o (default 32x0e)")
    g.add_argument("--max-ell", type=int, default=3, help="spherical harmonics degree (default 3)")
    g.add_argument("--correlation", type=int, default=3, help="body order - 1 of the product basis (default 3)")
    g.add_argument("--num-interactions", type=int, default=2, help="message-passing layers (default 2)")
    g.add_argument("--radial-mlp", type=int, nargs="+", default=[64, 64, 64], help="radial MLP widths")
    g.add_argument("--mlp-irreps", default="16x0e", help="hidden width of the last readout (default 16x0e)")
    g.add_argument("--model-type", default="ScaleShiftMACE", choices=["ScaleShiftMACE", "MACE"],
                   help="ScaleShiftMACE (default) or MACE (no scale and shift)")
    g.add_argument("--scaling", default="rms_forces_scaling", choices=["rms_forces_scaling", "std_scaling",
                   "no_scaling"], help="scale/shift from the data (default rms_forces_scaling)")
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("eval", help="predictions of a model on a file, and its errors per config_type "
                       "where the file has labels (as mace_eval_configs)")
    p.add_argument("--model", required=True, help="jaxtl model folder")
    p.add_argument("--data", required=True, help="structures, labelled or not (REF_energy, REF_forces, REF_stress)")
    p.add_argument("--output", default=None, help="write the structures with the predictions to this file "
                   "(extended XYZ; energy eV, forces eV/A, stress eV/A^3 as 9 values)")
    p.add_argument("--info-prefix", "--key-prefix", dest="info_prefix", default="MACE_",
                   help="prefix of the predicted keys in --output (default MACE_: MACE_energy, MACE_forces, ...)")
    p.add_argument("--json", action="store_true", help="print the errors as JSON instead of a table")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--dtype", default=None, choices=["float32", "float64"])
    p.add_argument("--backend", default="xla", choices=["xla", "cueq"], help="xla (default) or cueq (cuEquivariance)")
    p.set_defaults(func=cmd_eval)

    for module in ("jaxtl.finetune.cli", "jaxtl.learning_curve.cli", "jaxtl.demo", "jaxtl.distill.cli",
                   "jaxtl.md.cli", "jaxtl.graph.prepare"):
        importlib.import_module(module).add_parser(sub)  # a module that fails to import is an error
    return parser


def parse_args(argv):
    """The settings of a command line, with --config and a resumed run's folder applied."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "config") and hasattr(args, "resume"):
        args = _apply_config_file(parser, args, argv)
    return args


def main(argv=None) -> int:
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    tuning = NO_CPU_TUNING not in argv
    argv = [a for a in argv if a != NO_CPU_TUNING]  # accepted anywhere on the line
    if command_line and tuning:  # this process is the command's own: tune it (may restart it)
        from jaxtl.cpu import configure_cpu

        configure_cpu(restart=True)
    _quiet_libraries()
    from jaxtl import _xla_flags

    _xla_flags.enable_compilation_cache()
    args = parse_args(argv)
    if command_line and getattr(args, "quiet", False):
        _quiet_run()
    try:
        writers = _scalar_writers(args)
    except ImportError as err:  # an extra that is not installed
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        for writer in writers:
            writer.close()


def _quiet_run() -> None:
    """--quiet in the command's own process: nothing but warnings on screen (the run
    folder's logs are unaffected). Called from Python, --quiet only turns progress bars off."""
    import os

    os.environ["TQDM_DISABLE"] = "1"  # tqdm reads it for every bar; this process is the command's
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)


def _scalar_writers(args) -> list:
    """--tensorboard / --wandb as the writers every training run of this command uses."""
    if not (getattr(args, "tensorboard", None) or getattr(args, "wandb", None)):
        return []
    from jaxtl.train import progress

    writers = []
    if args.tensorboard:
        writers.append(progress.TensorBoardWriter(args.tensorboard))
    if args.wandb:
        writers.append(progress.WandbWriter(args.wandb, run_dir=getattr(args, "out", None)))
    progress.use_writers(writers)
    return writers


if __name__ == "__main__":
    sys.exit(main())
