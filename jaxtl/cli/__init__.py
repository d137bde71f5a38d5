"""The `jaxtl` command: one entry point, a thin subcommand per capability.

jaxtl convert IN.model OUT_DIR       mace-torch file -> jaxtl model folder (verified)
jaxtl convert NAME [OUT_DIR]        a released foundation model, downloaded and converted once
jaxtl models                        the released foundation models jaxtl knows by name
jaxtl datasets [NAME]               the notebooks' and benchmarks' data files by name (jaxtl.datasets)
jaxtl export MODEL_DIR OUT.model    jaxtl model folder -> mace-torch .model file (verified)
jaxtl train --train F --out DIR     train a new MACE from scratch
jaxtl finetune --foundation M ...   frozen transfer learning of a foundation model
jaxtl eval --model DIR --data F     predictions (--output) and errors per config_type
jaxtl eval --model DIR --data F1 DIR2 ... [--devices N | --distributed]
                                    errors per file / prepared folder and overall, sharded over devices
jaxtl learning-curve --foundation M --train POOL --test F --out DIR
                                    error against training-set size, per strategy and seed, at convergence
jaxtl demo                          the whole workflow on data it makes itself
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from jaxtl.cli import (
    convert,
    datasets,
    demo,
    distill,
    evaluate,
    export,
    finetune,
    learning_curve,
    md,
    models,
    prepare,
    train,
)

NO_CPU_TUNING = "--no-cpu-tuning"
# in the order `jaxtl --help` lists them
COMMANDS = (convert, export, models, datasets, train, evaluate, finetune, learning_curve, demo, distill, md, prepare)


def _quiet_libraries() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxtl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        NO_CPU_TUNING,
        action="store_true",
        help="leave glibc's allocator, XLA_FLAGS and JAX's CPU dispatch as they are: no "
        "jaxtl.configure_cpu() (slower on CPU, less memory kept; also JAXTL_NO_CPU_TUNING=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def parse_args(argv):
    """The settings of a command line, with --config and a resumed run's folder applied.

    A command that can resume gets `args.given`: {dest: flag as typed} of the options on the
    command line (`jaxtl.settings.given_flags`), which a resumed run checks against its record.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "resume"):
        from jaxtl.settings import apply_settings, given_flags, subparser

        args.given = given_flags(subparser(parser, args.command), argv)
        if hasattr(args, "config"):
            args = apply_settings(parser, args, argv)
    args.argv = list(argv)  # the command line as given, for the run records
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
    if command_line:
        _terminate_as_exit()
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


def _terminate_as_exit() -> None:
    """SIGTERM (a job scheduler's stop, `timeout`, `kill`) in the command's own process as
    SystemExit(143): the run then leaves as after an error, writing the checkpoints of the
    epochs it holds and releasing its claims, instead of dying where it stands."""

    def exit_143(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_143)


def _quiet_run() -> None:
    """--quiet in the command's own process: nothing but warnings on screen (the run
    folder's logs are unaffected). Called from Python, --quiet only turns progress bars off."""
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
