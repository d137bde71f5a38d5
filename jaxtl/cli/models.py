"""`jaxtl models`: the released foundation models `jaxtl convert NAME` accepts."""

from __future__ import annotations

from jaxtl.cli.convert import CACHE_HELP


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list the released foundation models `convert NAME` accepts")
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl import foundations

    print(foundations.describe(args.cache))
    return 0
