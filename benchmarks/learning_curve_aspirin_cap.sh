#!/usr/bin/env bash
# The 10 % f5 and scratch cells of learning_curve_aspirin.sh trained as mace-torch 0.3.16 trains a single
# process: to the 500-epoch cap, keeping the best-validation (EMA) weights, so that
# learning_curve_mace_torch.py compares the two codes under one protocol:
#
#   benchmarks/learning_curve_aspirin_cap.sh runs/lc_aspirin_cap500      # start, or resume: the same command again
#   python benchmarks/learning_curve_mace_torch.py --grid runs/lc_aspirin --jaxtl-grids runs/lc_aspirin_cap500 \
#       --out runs/lc_aspirin_mace_torch
#
# Same data, seeds (hence subsets and validation sets) and training settings as learning_curve_aspirin.sh.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
shift
exec "${PYTHON:-python}" -m jaxtl.cli learning-curve \
  --foundation ../shared/models/spice_mace.model \
  --train ../shared/data/molecules/aspirin_train.extxyz \
  --test ../shared/data/molecules/aspirin_test.extxyz \
  --fractions 0.1 --strategies scratch f5 --seeds 3 \
  --batch-size 10 --lr 0.005 --scratch-lr 0.01 --patience 500 --min-rel-improvement 0 --scheduler-patience 10 --max-epochs 500 \
  --dtype float32 --out "$out" "$@"
