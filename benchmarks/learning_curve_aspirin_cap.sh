#!/usr/bin/env bash
# The 10 % f5 and scratch cells of learning_curve_aspirin.sh trained as mace-torch 0.3.16 trains a single
# process: to the 500-epoch cap, keeping the best-validation (EMA) weights, so that
# learning_curve_mace_torch.py compares the two codes under one protocol:
#
#   benchmarks/learning_curve_aspirin_cap.sh runs/lc_aspirin_cap500      # start, or resume: the same command again
#   python benchmarks/learning_curve_mace_torch.py --grid runs/lc_aspirin --max-epochs 500 --jaxtl-grids runs/lc_aspirin_cap500 \
#       --out runs/lc_aspirin_mace_torch
#
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
shift
# learning_curve_aspirin.sh's command with the grid cut to these cells and its rule replaced
# (the later flags win), so the data and training settings are the same by construction
exec bash "$(dirname "$0")/learning_curve_aspirin.sh" "$out" --fractions 0.1 --strategies scratch f5 \
  --patience 500 --min-rel-improvement 0 --max-epochs 500 --first 0.1:f5 "$@"
