#!/usr/bin/env python
"""Convert a mace-torch model file into a jaxtl model folder, and verify it.

    python converters/convert_mace.py IN.model OUT_DIR [--dtype float32|float64] [--head NAME] [--no-verify]

The same as `jaxtl convert`. The converted model is evaluated against mace-torch on
structures of the model's own elements (float64 and the target dtype); the script
exits non-zero, and writes nothing, when the file cannot be converted or the two
disagree beyond tolerance (relative 1e-7 in float64, 1e-4 in float32).
"""

import sys

from jaxtl.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
