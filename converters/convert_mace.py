#!/usr/bin/env python
"""Convert a mace-torch model file into a jaxtl model folder, and verify it.

    python converters/convert_mace.py IN.model OUT_DIR [--dtype float32|float64] [--head NAME]

Exits non-zero (and writes nothing) when the file cannot be converted or the
converted model disagrees with mace-torch beyond tolerance.
"""

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="mace-torch .model file (pickled ScaleShiftMACE or MACE)")
    parser.add_argument("out_dir", help="output folder (config.json, variables/, metadata.json)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default=None, help="dtype of the saved weights (default: the model's)")
    parser.add_argument("--head", default=None, help="keep only this head of a multi-head model")
    parser.add_argument("--no-verify", action="store_true", help="skip the comparison with mace-torch")
    args = parser.parse_args(argv)

    from jaxtl.convert.convert import convert_file
    from jaxtl.convert.torch_reader import ConversionError

    try:
        convert_file(args.model, args.out_dir, dtype=args.dtype, head=args.head, check=not args.no_verify)
    except (ConversionError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
