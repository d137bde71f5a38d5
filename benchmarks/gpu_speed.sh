#!/usr/bin/env bash
# Issue 8's speed benchmarks on one GPU machine, in one go (energy+forces against mace-torch,
# scale to 10^5 atoms, training step), each under its own share of LIMIT_S seconds.
#
# Expects ../shared (or a copy in .gpu/shared, linked there) and, on a machine without
# network, the wheels it lacks in .whl/ (see benchmarks/README.md). Results go to $OUT.
#
#     OUT=runs/gpu_speed bash benchmarks/gpu_speed.sh [LIMIT_S]
set -u
LIMIT=${1:-480}
OUT=${OUT:-runs/gpu_speed}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
[ -e ../shared ] || ln -s "$PWD/.gpu/shared" ../shared
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi -L 2>/dev/null
python3 -c "import jax, torch; print('jax', jax.__version__, jax.devices(), 'torch', torch.__version__)"
started=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - started) )); }

timeout $(( $(left) * 40 / 100 )) python3 benchmarks/bench_energy_forces.py --device gpu --repeats 10 \
  --out "$OUT/energy_forces_gpu" 2>&1 | grep -v Warning | tail -12
timeout $(( $(left) * 60 / 100 )) python3 benchmarks/scale.py --sizes 1000,10000,100000 --device gpu --torch \
  --repeats 3 --out "$OUT/scale_gpu" 2>&1 | grep -v Warning | tail -12
timeout $(( $(left) - 10 )) python3 benchmarks/bench_train_step.py --device gpu --repeats 10 --dtypes float32 \
  --out "$OUT/train_step_gpu" 2>&1 | grep -v Warning | tail -8
ls -la "$OUT"
