"""`jaxtl export`: a jaxtl model folder as a mace-torch `.model` file, verified against mace-torch."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a jaxtl model as a mace-torch .model file, verified against mace-torch")
    p.add_argument("model_dir", help="jaxtl model folder (config.json + variables/)")
    p.add_argument("out", help="mace-torch .model file to write (a pickled MACE / ScaleShiftMACE)")
    p.add_argument(
        "--dtype", choices=["float32", "float64"], default=None, help="dtype of the file (default: the model's)"
    )
    p.add_argument("--head", default=None, help="write only this head of a multi-head model")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl.convert.export import export_file
    from jaxtl.convert.torch_reader import ConversionError
    from jaxtl.model_io import ModelFileError

    try:
        export_file(args.model_dir, args.out, dtype=args.dtype, head=args.head)
    except (ConversionError, ModelFileError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
