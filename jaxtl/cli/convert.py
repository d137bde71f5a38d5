"""`jaxtl convert`: a mace-torch file, or a released foundation model by name, into a jaxtl
model folder, verified against mace-torch."""

from __future__ import annotations

import sys
from pathlib import Path

CACHE_HELP = "cache of downloaded and converted foundation models (default: $JAXTL_CACHE, else ~/.cache/jaxtl)"


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a mace-torch .model file and verify it against mace-torch")
    p.add_argument(
        "model",
        help="mace-torch .model file (pickled ScaleShiftMACE or MACE), or the name of a "
        "released foundation model (see `jaxtl models`), downloaded into --cache and converted once",
    )
    p.add_argument(
        "out_dir",
        nargs="?",
        default=None,
        help="output model folder (needed for a file; for a name, default: the cached folder)",
    )
    p.add_argument("--cache", default=None, help=CACHE_HELP)
    p.add_argument(
        "--sha256",
        default=None,
        help="expected sha256 (hex) of the downloaded file (default: the "
        "registry's, when known; the zip CRCs and length are always checked)",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default=None, help="saved dtype (default: the model's)")
    p.add_argument("--head", default=None, help="keep only this head of a multi-head model")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check against mace-torch")
    p.set_defaults(func=run)


def run(args) -> int:
    from jaxtl import foundations
    from jaxtl.convert.convert import convert_file
    from jaxtl.convert.torch_reader import ConversionError

    by_name = not Path(args.model).exists() and not Path(args.model).suffix
    try:
        if by_name:  # a released model: download and convert into the cache once, then copy out
            if args.out_dir is None and (args.dtype or args.head):
                raise foundations.FoundationError("--dtype and --head need OUT_DIR (the cached copy keeps them all)")
            folder = foundations.model_dir(args.model, cache=args.cache, sha256=args.sha256, check=not args.no_verify)
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
