#!/usr/bin/env bash
# The aspirin surrogate of issue 22: a linear ACE distilled from the SPICE foundation fine-tuned on
# 10 % of rMD17 aspirin (the learning curve's f5 cell, seed 0), judged against DFT on all of
# aspirin_test.extxyz and against the teacher on MD runs training never saw.
#
#   benchmarks/distill_aspirin.sh runs/aspirin_student                 # start
#   benchmarks/distill_aspirin.sh runs/aspirin_student --resume        # continue after a stop
#   DEGREE=9 benchmarks/distill_aspirin.sh runs/aspirin_student         # another basis, in OUT/ace_o3_d9
#
# Another basis on labels already made: `jaxtl distill --teacher T --labelled OUT/ace_o3_d7/labelled.xyz
# --dft-test ... --student ace --ace-degree 9 ... --out DIR` (no sampling flags).
#
# Run from the repository root after benchmarks/learning_curve_aspirin.sh has finished the cell
# runs/lc_aspirin/cells/0.1_f5_s0 (or set TEACHER to another model folder). Starts: 6 frames of
# the aspirin pool (the 6th held out for test runs only); 20,000 Langevin steps of 0.5 fs at 500 K
# from each, every 40th frame kept; test runs at 500 and 700 K.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [--resume]}
shift
teacher=${TEACHER:-runs/lc_aspirin/cells/0.1_f5_s0/run/model}
mkdir -p "$out"
if [ ! -f "$out/starts.xyz" ]; then
  "${PYTHON:-python}" - "$out/starts.xyz" <<'PY'
import sys

import ase.io
from ase import Atoms

frames = ase.io.read("../shared/data/molecules/aspirin_train.extxyz", ":")
starts = [Atoms(frames[i].numbers, frames[i].positions) for i in (0, 200, 400, 600, 800, 1000)]
ase.io.write(sys.argv[1], starts, format="extxyz")
PY
fi
exec "${PYTHON:-python}" -m jaxtl.cli distill --teacher "$teacher" \
  --structures "$out/starts.xyz" --held-out-starts 5 \
  --md-steps 20000 --keep-every 40 --temperature 500 --dt 0.5 --test-temperatures 500 700 --test-md-steps 4000 \
  --dft-test ../shared/data/molecules/aspirin_test.extxyz \
  --student ace --ace-order 3 --ace-degree "${DEGREE:-7}" --ace-r-max 5.0 --quiet --out "$out/ace_o3_d${DEGREE:-7}" "$@"
