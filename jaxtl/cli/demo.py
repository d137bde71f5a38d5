"""`jaxtl demo`: the whole workflow on data jaxtl makes itself (`jaxtl.demo`)."""

from __future__ import annotations

import logging


def add_parser(sub) -> None:
    from jaxtl import demo  # its docstring is the command's description; it imports no JAX at module level

    p = sub.add_parser(
        "demo", help="the whole workflow on data jaxtl makes itself (a few minutes on a CPU)", description=demo.__doc__
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--fast", action="store_true", help="tiny settings (about a minute; for tests)")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl.demo import run_demo

    logging.getLogger("jaxtl").setLevel(logging.WARNING)
    if args.fast:
        run_demo(args.out, fractions=(0.1, 1.0), steps=40, foundation_epochs=4, fast=True)
    else:
        run_demo(args.out)
    return 0
