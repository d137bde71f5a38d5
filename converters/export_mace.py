#!/usr/bin/env python
"""Write a jaxtl model folder as a mace-torch `.model` file, and verify it.

    python converters/export_mace.py MODEL_DIR OUT.model [--dtype float32|float64] [--head NAME]

The same as `jaxtl export`. The written file is loaded back with `torch.load` and
evaluated by mace-torch against jaxtl on structures of the model's own elements
(float64, same weights); the script exits non-zero, and leaves no file, when the
model cannot be expressed in mace-torch or the two disagree beyond round-off.
The file works wherever a mace-torch model does (mace's ASE calculator,
mace_create_lammps_model, OpenMM-ML).
"""

import sys

from jaxtl.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
