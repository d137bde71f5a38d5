"""`jaxtl datasets`: the data and model files of the notebooks, examples and benchmarks (`jaxtl.datasets`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "datasets",
        help="the data and model files of the notebooks and benchmarks, by name "
        "(jaxtl.datasets; mirror: --root, else $JAXTL_DATA, else the cache)",
    )
    p.add_argument(
        "name",
        nargs="?",
        help="print this entry's local path (downloaded and sha256-checked when it "
        "has a public URL and is found nowhere); without a name, list every entry",
    )
    p.add_argument("--root", default=None, help="a mirror folder, searched before $JAXTL_DATA and the cache")
    p.add_argument("--verify", action="store_true", help="check the sha256 of the entry's files")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl import datasets

    if args.name is None:
        print(datasets.describe(args.root))
    elif args.verify:
        print(datasets.verify(args.name, args.root))
    else:
        print(datasets.path(args.name, args.root))
    return 0
