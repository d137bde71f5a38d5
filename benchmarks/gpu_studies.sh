#!/usr/bin/env bash
# The training studies of benchmarks/ on one GPU machine, in one go (about 7 minutes on an H200).
#
# Runs side by side on the one GPU (each process allocates what it needs):
#   * finetune_aspirin.py: one process per training fraction (f0, f5, f6, finer, scratch),
#     plus scratch at 100 % with a longer budget (the converged reference of the paper's claim);
#   * distill_h2cu.py: MD sampling + labelling with the teacher and student A2, then the other
#     students on the same labels, one process each.
# Whatever has finished when the time limit hits is packed into $OUT/gpu_studies.tgz (results,
# reports, logs) and $OUT/h2cu_labelled.xyz.gz (the teacher's labels, for `--labelled`).
#
# Expects ../shared (data and models; on a machine without it, a copy in .gpu/shared is linked
# there) and the wheels of packages the machine lacks in .whl/ (see benchmarks/README.md).
#
#     bash benchmarks/gpu_studies.sh [LIMIT_S]
set -u
LIMIT=${1:-400}
OUT=${OUT:-runs/gpu_studies_out}
R=/tmp/gpu_studies
mkdir -p "$OUT" "$R"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
[ -e ../shared ] || ln -s "$PWD/.gpu/shared" ../shared
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import jax, flax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'torch', torch.__version__)"

started=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - started) )); }

# distillation: the first student samples and labels
timeout "$(left)" python3 benchmarks/distill_h2cu.py --out $R/distill --students A2 --md-steps 2500 \
  --starts-per-slab 2 --epochs 80 --batch-size 32 --speed-repeats 5 > $R/distill_A2.log 2>&1 &

for f in 0.05 0.1 0.2 0.5 1.0; do
  timeout "$(left)" python3 benchmarks/finetune_aspirin.py --out $R/aspirin_$f --fractions $f --steps 800 \
    > $R/aspirin_$f.log 2>&1 &
done
timeout "$(left)" python3 benchmarks/finetune_aspirin.py --out $R/aspirin_scratch_long --fractions 1.0 \
  --strategies scratch --steps 3000 > $R/aspirin_scratch_long.log 2>&1 &

# the other students once the labels exist (train.xyz is written after labelled.xyz)
while [ ! -f $R/distill/A2/train.xyz ] && [ "$(left)" -gt 60 ]; do sleep 2; done
if [ -f $R/distill/A2/train.xyz ]; then
  for s in B2 C2 D2 M; do
    timeout "$(left)" python3 benchmarks/distill_h2cu.py --out $R/distill_$s --students $s \
      --labelled $R/distill/A2/labelled.xyz --epochs 80 --batch-size 32 --speed-repeats 5 > $R/distill_$s.log 2>&1 &
  done
fi
wait
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
# results and reports only (returned files are limited in size): no checkpoints, no structures
(cd $R && find . \( -name '*.json' -o -name '*.md' -o -name 'metrics.jsonl' -o -name '*.log' \) -not -path '*teacher*' \
  | tar czf "$OUT/gpu_studies.tgz" -T -)
[ -f $R/distill/A2/labelled.xyz ] && gzip -c $R/distill/A2/labelled.xyz > "$OUT/h2cu_labelled.xyz.gz"
ls -la "$OUT"
