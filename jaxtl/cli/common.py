"""What several subcommands share: the data, training and device argument groups, and the
configs built from them (`DataConfig`, `TrainConfig`), the run folder's settings record.

The library is imported inside the functions: `jaxtl.cli.main` tunes the process
(allocator, XLA_FLAGS) before JAX is first imported.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (mace-torch names and defaults)")
    g.add_argument(
        "--train",
        default=None,
        help="training structures (extended XYZ, an ASE database .db, or any ASE "
        "format); IsolatedAtom frames (one atom, config_type=IsolatedAtom) give E0s and are not trained "
        "on; frames with only some labels are kept, the missing labels weigh 0; or a folder written "
        "by `jaxtl prepare` (train only: streamed from disk)",
    )
    g.add_argument("--valid", default=None, help="validation structures (default: --valid-fraction of --train)")
    g.add_argument("--valid-fraction", type=float, default=0.1, help="fraction of --train held out (default 0.1)")
    g.add_argument("--test", default=None, help="test structures, evaluated at the end")
    g.add_argument(
        "--energy-key",
        default="REF_energy",
        help="info key of total energies in eV (default REF_energy, falling back to the ASE calculator's energy)",
    )
    g.add_argument("--forces-key", default="REF_forces", help="arrays key of forces in eV/A (default REF_forces)")
    g.add_argument("--stress-key", default="REF_stress", help="info key of stress in eV/A^3 (default REF_stress)")
    g.add_argument("--virials-key", default="REF_virials", help="info key of virials in eV (default REF_virials)")
    g.add_argument("--head-key", default="head", help="info key naming the head a structure trains (default head)")
    g.add_argument(
        "--config-type-weights",
        default=None,
        help='loss weight per config_type, JSON or a Python dict: \'{"Default": 1.0, "bulk": 2.0}\' '
        "(types not named weigh 1; per-frame config_weight and config_{energy,forces,stress}_weight "
        "info keys multiply it)",
    )
    g.add_argument(
        "--E0s",
        "--e0s",
        dest="e0s",
        default=None,
        help="isolated-atom energies: average (least squares on the data), isolated (the IsolatedAtom "
        "frames), estimated / foundation (finetune: fit the foundation's residual / keep its E0s), "
        "a JSON file, or a dict by atomic number such as '{1: -13.6, 8: -2042.0}' (default: the "
        "IsolatedAtom frames when --train has them, else average)",
    )
    g.add_argument(
        "--batch-size",
        type=int,
        default=10,
        help="structures per optimiser step over all devices "
        "(the global batch; a multiple of their number; default 10)",
    )
    g.add_argument(
        "--valid-batch-size", type=int, default=None, help="structures per evaluation batch (default: --batch-size)"
    )
    g.add_argument("--max-force", type=float, default=None, help="drop structures with |F| above this (eV/A)")
    g.add_argument("--train-fraction", type=float, default=1.0, help="train on this fraction only (default 1)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The training flags (one group, mace-torch's names), then the watching and distributed groups."""
    g = p.add_argument_group("training (mace-torch names and defaults, except EMA and stage two, on here)")
    _add_optimiser_args(g)
    _add_loss_args(g)
    _add_ema_and_stage_two_args(g)
    _add_run_args(g)
    _add_watching_args(p)
    add_distributed_args(p)


def _add_optimiser_args(g) -> None:
    """Epochs, learning rate and its schedule, optimiser, patience."""
    g.add_argument("--epochs", type=int, default=100, help="number of epochs (default 100; mace's max_num_epochs)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01, mace-torch's)")
    g.add_argument(
        "--scheduler",
        default="plateau",
        choices=["plateau", "exponential", "cosine", "constant"],
        help="learning-rate schedule (default plateau: x--lr-factor after --scheduler-patience epochs "
        "without improvement)",
    )
    g.add_argument("--scheduler-patience", type=int, default=50, help="plateau scheduler patience (default 50)")
    g.add_argument("--lr-factor", type=float, default=0.8, help="plateau scheduler factor (default 0.8)")
    g.add_argument("--lr-scheduler-gamma", type=float, default=0.9993, help="exponential schedule factor per epoch")
    g.add_argument("--optimizer", default="adam", choices=["adam", "adamw"], help="optimiser (default adam)")
    g.add_argument("--weight-decay", type=float, default=5e-7, help="weight decay (default 5e-7)")
    g.add_argument("--amsgrad", action=argparse.BooleanOptionalAction, default=True, help="AMSGrad (default on)")
    g.add_argument("--clip-grad", type=float, default=10.0, help="max gradient norm (default 10)")
    g.add_argument(
        "--patience",
        type=int,
        default=2048,
        help="stop after this many epochs without a better validation loss (default 2048)",
    )


def _add_loss_args(g) -> None:
    """Loss function and weights."""
    g.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of energy per atom (default 1)")
    g.add_argument("--forces-weight", type=float, default=100.0, help="loss weight of forces (default 100)")
    g.add_argument("--stress-weight", type=float, default=1.0, help="loss weight of stress (default 1)")
    g.add_argument("--virials-weight", type=float, default=1.0, help="loss weight of virials (default 1)")
    g.add_argument(
        "--loss",
        default="weighted",
        help="weighted | forces_only | stress | virials | huber | universal | l1l2 (default weighted)",
    )
    g.add_argument("--huber-delta", type=float, default=0.01, help="delta of the Huber losses (default 0.01)")


def _add_ema_and_stage_two_args(g) -> None:
    """EMA of the weights and mace's stage two (--swa)."""
    g.add_argument(
        "--ema",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="evaluate and save an exponential moving average of the weights (default on; --no-ema: off)",
    )
    g.add_argument("--ema-decay", type=float, default=0.99, help="EMA decay (default 0.99)")
    g.add_argument(
        "--stage-two",
        "--swa",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mace's stage two (--swa): energy-heavy loss weights and --stage-two-lr from "
        "--start-stage-two on (default on; --no-stage-two or --no-swa: off)",
    )
    g.add_argument(
        "--start-stage-two",
        "--start-swa",
        type=int,
        default=None,
        help="first stage-two epoch, 0-based (default: 60 %% of --epochs, so stage two runs over the "
        "last 40 %%; mace-torch's default is 75 %%)",
    )
    g.add_argument(
        "--stage-two-lr", "--swa-lr", type=float, default=1e-3, help="stage-two learning rate (default 1e-3)"
    )
    for name, default in (("energy", 1000.0), ("forces", 100.0), ("stress", 10.0), ("virials", 10.0)):
        g.add_argument(
            f"--stage-two-{name}-weight",
            f"--swa-{name}-weight",
            type=float,
            default=default,
            help=f"stage-two loss weight of {name} (default {default:g})",
        )


def _add_run_args(g) -> None:
    """Dtype, backend, seed, run folder, resume and a settings file."""
    g.add_argument(
        "--dtype", default="float32", choices=["float32", "float64"], help="training dtype (default float32)"
    )
    g.add_argument(
        "--backend",
        default="xla",
        choices=["xla", "cueq"],
        help="xla (default) or cueq: NVIDIA cuEquivariance kernels (pip install jaxtl[cueq])",
    )
    g.add_argument("--seed", type=int, default=123, help="seed of the split, init and data order (default 123)")
    g.add_argument("--out", default=None, help="run folder (checkpoints, logs, run_config.yaml, model/)")
    g.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue an interrupted run exactly: --resume RUN_DIR alone restores every setting from "
        "RUN_DIR/run_config.yaml (a flag that differs from the saved value is an error; --epochs "
        "may be raised); plain --resume continues the run in --out",
    )
    g.add_argument(
        "--config",
        default=None,
        help="YAML/JSON settings: a mace-torch run_train YAML (options jaxtl lacks are named and "
        "ignored), or the run_config.yaml / train_config.yaml of a jaxtl run; flags win",
    )


def _add_watching_args(p: argparse.ArgumentParser) -> None:
    """Quiet runs, TensorBoard and W&B."""
    g = p.add_argument_group("watching the run")
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars and no epoch lines on screen (batch "
        "jobs); train.log and metrics.jsonl in --out still get every epoch",
    )
    g.add_argument(
        "--tensorboard",
        default=None,
        metavar="DIR",
        help="also write each epoch's scalars as TensorBoard events in DIR (pip install jaxtl[tensorboard])",
    )
    g.add_argument(
        "--wandb",
        default=None,
        metavar="PROJECT",
        help="also log each epoch's scalars to this Weights & Biases project (pip install jaxtl[wandb])",
    )


def parse_mapping(text, what: str) -> dict | None:
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


def stage_two_start(args) -> int | None:
    if not args.stage_two:
        return None
    if args.start_stage_two is not None:
        return int(args.start_stage_two)
    return max(1, int(STAGE_TWO_AT * args.epochs))


def add_distributed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("devices and processes (data parallel; see examples/slurm_train.sh)")
    g.add_argument(
        "--devices",
        type=int,
        default=None,
        help="devices of this process to train on (default 1); with --distributed, every device of every process",
    )
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process job on JAX's runtime "
        "(jax.distributed): start one process per host (or per GPU) with the same arguments; the "
        "settings below are detected from SLURM, Open MPI or Cloud TPU when not given",
    )
    g.add_argument("--coordinator-address", default=None, help="HOST:PORT of process 0's coordinator")
    g.add_argument("--num-processes", type=int, default=None, help="number of processes in the job")
    g.add_argument("--process-id", type=int, default=None, help="rank of this process, 0 .. N-1")
    g.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=100,
        help="seconds after which a silent process is "
        "declared dead and the job stops (default 100); restart all with --resume",
    )


def start_distributed(args) -> None:
    """Join the multi-process job if asked (before any JAX computation), count the devices
    of the step into `args.n_devices` and split `args.batch_size`, the global batch, over them."""
    args.n_devices = join_job(args)
    from jaxtl.train.distributed import per_device_batch_size

    args.global_batch_size = args.batch_size  # what the run's settings record
    args.batch_size = per_device_batch_size(args.batch_size, args.n_devices)


def join_job(args) -> int:
    """Join the multi-process job that `add_distributed_args`' flags ask for (before any JAX
    computation); the number of devices a step runs on (--devices, or every device of the job)."""
    explicit = (args.coordinator_address, args.num_processes, args.process_id)
    n_devices = args.devices or 1
    if args.distributed or any(v is not None for v in explicit):
        import jax

        from jaxtl.train.distributed import DistributedConfig, initialize

        initialize(DistributedConfig(*explicit, heartbeat_timeout_s=args.heartbeat_timeout))
        if jax.process_index() != 0:  # one copy of the progress messages; warnings from every process
            logging.getLogger("jaxtl").setLevel(logging.WARNING)
        if args.devices not in (None, jax.device_count()):
            raise ValueError(
                f"--devices {args.devices}: a job of {jax.process_count()} processes trains on all "
                f"their {jax.device_count()} devices"
            )
        n_devices = jax.device_count()
    return n_devices


def train_config(args):
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.loss import LossConfig
    from jaxtl.train.optimizer import OptimizerConfig
    from jaxtl.train.stage_two import StageTwoConfig

    return TrainConfig(
        max_num_epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        dtype=args.dtype,
        ema=args.ema,
        ema_decay=args.ema_decay,
        backend=args.backend,
        progress_bar=not getattr(args, "quiet", False),
        loss=LossConfig(
            loss=args.loss,
            energy_weight=args.energy_weight,
            forces_weight=args.forces_weight,
            stress_weight=args.stress_weight,
            virials_weight=args.virials_weight,
            huber_delta=args.huber_delta,
        ),
        optimizer=OptimizerConfig(
            optimizer=args.optimizer,
            lr=args.lr,
            amsgrad=args.amsgrad,
            weight_decay=args.weight_decay,
            clip_grad=args.clip_grad,
            scheduler=args.scheduler,
            lr_factor=args.lr_factor,
            scheduler_patience=args.scheduler_patience,
            lr_scheduler_gamma=args.lr_scheduler_gamma,
        ),
        stage_two=StageTwoConfig(
            enabled=args.stage_two,
            start_epoch=stage_two_start(args),
            swa_lr=args.stage_two_lr,
            energy_weight=args.stage_two_energy_weight,
            forces_weight=args.stage_two_forces_weight,
            stress_weight=args.stage_two_stress_weight,
            virials_weight=args.stage_two_virials_weight,
        ),
        n_devices=getattr(args, "n_devices", 1),
    )


def data_keys(args):
    from jaxtl.graph.io import DataKeys

    return DataKeys(
        energy=args.energy_key,
        forces=args.forces_key,
        stress=args.stress_key,
        virials=args.virials_key,
        head=args.head_key,
    )


def data_config(args):
    """The data settings; also checks --E0s, so a bad value fails before a run starts."""
    from jaxtl.train.data import DataConfig
    from jaxtl.train.e0s import parse_e0s

    if args.e0s is not None:
        parse_e0s(args.e0s)
    weights = parse_mapping(args.config_type_weights, "--config-type-weights")
    return DataConfig(
        train_file=args.train,
        valid_file=args.valid,
        valid_fraction=args.valid_fraction,
        test_file=args.test,
        keys=data_keys(args),
        batch_size=args.batch_size,
        valid_batch_size=args.valid_batch_size or args.batch_size,
        max_force=args.max_force,
        train_fraction=args.train_fraction,
        seed=args.seed,
        config_type_weights={str(k): float(v) for k, v in weights.items()} if weights else None,
    )


def check_fresh_run(args) -> None:
    """A new run must not start in a folder that holds one (its settings would be overwritten)."""
    if not args.resume and (Path(args.out) / "checkpoints" / "latest").exists():
        raise FileExistsError(f"{args.out} already holds checkpoints: use --resume {args.out} or a new --out")
