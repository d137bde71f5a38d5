#!/usr/bin/env bash
# The SPICE foundation -> rMD17 aspirin learning curve at convergence (arXiv 2502.15582's claim on our data).
#
#   benchmarks/learning_curve_aspirin.sh runs/lc_aspirin          # start, or resume: the same command again
#
# Run from the repository root (the data are read from ../shared). Pool: the 1,200 structures of
# aspirin_train.extxyz (120 per seed held out for early stopping, fractions of the other 1,080);
# test: all 1,800 of aspirin_test.extxyz. Strategies: scratch (the foundation's architecture, new
# weights), f0 (every weight trains), f5, f6 (mace-torch --freeze 5 / 6) and LoRA (rank 4, the
# foundation frozen); 3 seeds. float32: the errors compared are >= 1 meV/A and >= 0.1 meV/atom,
# far above float32 rounding (about 0.05 meV/atom on aspirin's total energies), and it is about
# twice as fast on a CPU. The most informative cells run first: 10 % f5 and scratch, scratch 100 %,
# then whether f5 reaches scratch-at-100 % at 50 or 100 %, f5's curve, and the other strategies at 10 %.
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
shift
exec "${PYTHON:-python}" -m jaxtl.cli learning-curve \
  --foundation ../shared/models/spice_mace.model \
  --train ../shared/data/molecules/aspirin_train.extxyz \
  --test ../shared/data/molecules/aspirin_test.extxyz \
  --fractions 0.05 0.1 0.2 0.5 1.0 --strategies scratch f0 f5 f6 lora --seeds 3 \
  --batch-size 10 --lr 0.005 --scratch-lr 0.01 --patience 30 --min-rel-improvement 0.01 --scheduler-patience 10 --max-epochs 2000 \
  --dtype float32 --first 0.1:f5 0.1:scratch 1:scratch 0.5:f5 1:f5 0.2:f5 0.05:f5 0.1:f6 0.1:f0 0.1:lora --out "$out" "$@"
