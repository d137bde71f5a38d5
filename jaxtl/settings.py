"""A command's settings beyond its flags: `--config` files and the run folder.

- `--config FILE`: a mace-torch run_train YAML or a jaxtl run's settings
  (`jaxtl.mace_config.translate`); flags given on the command line win, settings the
  command lacks are named on stderr.
- `save_run_config`: every setting of a `train`/`finetune` run in OUT/run_config.yaml
  (input files as absolute paths), so the run folder alone describes the run.
- `--resume RUN_DIR`: the saved settings are restored; a flag (or --config value) that
  differs from the saved one is an error naming the flag and both values; `--epochs`
  may change (raising it continues the run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# Settings that are not part of a run's configuration (where it runs, how to start it).
# where and how a run is watched or started, not what it computes
NOT_SAVED = {
    "config",
    "resume",
    "func",
    "command",
    "dry_run",
    "quiet",
    "tensorboard",
    "wandb",
    "distributed",
    "coordinator_address",
    "num_processes",
    "process_id",
    "heartbeat_timeout",
    "first",
    "max_cells",
    "import_cells",
    "status",
}
# Settings a resumed run may change: raising the length continues a run. A command adds its
# own through its parser's `resume_may_change` default.
RESUME_MAY_CHANGE = {"epochs", "out"}
RUN_CONFIG = "run_config.yaml"


def subparser(parser, command):
    """The subcommand's parser (for its flags and defaults)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def resume_may_change(sub) -> set[str]:
    """Settings a resumed run of the subcommand `sub` may change: RESUME_MAY_CHANGE and the
    parser's own `resume_may_change` default."""
    return RESUME_MAY_CHANGE | set(sub.get_default("resume_may_change") or ())


def fixed_on_resume(sub, given: dict[str, str]) -> dict[str, str]:
    """The options of `given` ({dest: flag}) that set what a run computes and that a resumed
    run may not change: not how it is watched or started (NOT_SAVED), nor `resume_may_change`."""
    free = NOT_SAVED | resume_may_change(sub) | {"help"}
    return {dest: flag for dest, flag in given.items() if dest not in free}


def given_flags(parser, argv) -> dict[str, str]:
    """{dest: the flag as typed} of the options given on the command line (whatever their
    values: a flag given with its default value is given)."""
    options = {o: a.dest for a in parser._actions for o in a.option_strings}
    given = {}
    for token in argv:
        if not token.startswith("--"):
            continue
        flag = token.split("=")[0]
        matches = [o for o in options if o == flag] or [o for o in options if o.startswith(flag)]
        if len(matches) == 1:
            given[options[matches[0]]] = matches[0]
    return given


def same_value(a, b) -> bool:
    """Setting values equal across YAML round trips (tuples/lists, ints/floats, paths)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _file_setting(dest: str) -> bool:
    return dest in ("train", "valid", "test", "foundation", "replay_file")


def absolute_paths(dest: str, value):
    """Input files as absolute paths (a resumed run may start from another folder)."""
    if not _file_setting(dest) or value is None:
        return value
    if isinstance(value, list):
        return [os.path.abspath(v) if os.path.exists(v) else v for v in value]
    return os.path.abspath(value) if os.path.exists(str(value)) else value


def save_run_config(args, sub) -> None:
    """Write every setting of the command (its flags' values) to OUT/run_config.yaml."""
    import yaml

    dests = {a.dest for a in sub._actions if a.dest not in NOT_SAVED and a.dest != "help"}
    values = {d: absolute_paths(d, getattr(args, d)) for d in sorted(dests) if hasattr(args, d)}
    if "batch_size" in values and hasattr(args, "global_batch_size"):  # split over devices by _start_distributed
        values["batch_size"] = args.global_batch_size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RUN_CONFIG + ".tmp")
    tmp.write_text(yaml.safe_dump({"command": args.command, **values}, sort_keys=False))
    tmp.replace(out / RUN_CONFIG)


def read_settings(path: str) -> dict:
    import yaml

    with open(path) as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return values


def apply_settings(parser, args, argv):
    """Settings from --config and, on --resume, from the run folder; flags win over
    --config, and must agree with a resumed run's saved settings."""
    from jaxtl.mace_config import translate

    sub = subparser(parser, args.command)
    given = given_flags(sub, argv)
    dests = {a.dest for a in sub._actions} - {"help"}
    may_change = resume_may_change(sub)
    from_file: dict[str, str] = {}
    if args.config:
        settings, ignored = translate(read_settings(args.config), dests - NOT_SAVED)
        if ignored:
            print(
                f"warning: {args.config}: jaxtl {args.command} ignores these settings: {', '.join(ignored)}",
                file=sys.stderr,
            )
        for dest, value in settings.items():
            if dest not in given:
                setattr(args, dest, value)
                from_file[dest] = f"{args.config}: {dest}"

    if args.resume:
        run_dir = args.out if args.resume is True else args.resume
        if run_dir is None:
            parser.error("--resume needs the run folder: --resume RUN_DIR (or --resume with --out)")
        if args.resume is not True and args.out is not None and Path(args.out).resolve() != Path(run_dir).resolve():
            parser.error(f"--resume {run_dir} and --out {args.out} name different folders")
        saved_path = Path(run_dir) / RUN_CONFIG
        if saved_path.exists():
            saved = read_settings(str(saved_path))
            if saved.get("command", args.command) != args.command:
                parser.error(f"{run_dir} is a `jaxtl {saved['command']}` run, not `jaxtl {args.command}`")
            chosen = {**from_file, **{d: f for d, f in given.items()}}
            for dest, source in chosen.items():
                if (
                    dest in saved
                    and dest not in may_change | NOT_SAVED
                    and not same_value(absolute_paths(dest, getattr(args, dest)), saved[dest])
                ):
                    parser.error(
                        f"{source} {getattr(args, dest)!r} conflicts with the resumed run's {dest} = "
                        f"{saved[dest]!r} ({saved_path}); drop it to resume, or start a new run"
                    )
            for dest, value in saved.items():
                if dest in dests and dest not in given and not (dest in from_file and dest in may_change):
                    setattr(args, dest, value)
        elif args.resume is not True:
            parser.error(
                f"--resume {run_dir}: no {RUN_CONFIG} there (a run started by `jaxtl {args.command}` "
                f"writes one); give the run's flags with --out {run_dir} --resume"
            )
        args.out, args.resume = str(run_dir), True
    needed = ("out",) if getattr(args, "status", False) else ("foundation", "train", "out")  # --status reads OUT alone
    missing = [f"--{d}" for d in needed if d in dests and getattr(args, d, None) is None]
    if missing:
        parser.error(f"{args.command}: the following arguments are required: {', '.join(missing)}")
    return args
