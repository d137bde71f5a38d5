#!/usr/bin/env bash
# The speed benchmarks on one GPU machine, in one go (energy+forces against mace-torch,
# training step, scale to 10^5 atoms), each under its own share of LIMIT_S seconds. When
# cuequivariance-jax is importable (with its GPU kernels: cuequivariance-ops-jax-cu12/13), the
# cuEquivariance backend's tests run first on the GPU's kernels, and the energy+forces and
# training benchmarks time both backends side by side, and the scale run uses it (SCALE=0
# skips the scale run).
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
BACKENDS=xla
if python3 -c "import cuequivariance_jax" 2>/dev/null; then
  # the kernels' parity first (real files, MP-0-medium shape, training gradient: ~30 s each on
  # an H100, most of it compiling); the backend is timed only if they pass
  timeout $(( $(left) * 35 / 100 )) python3 -m pytest -q -p no:cacheprovider -W ignore tests/model/test_cueq.py \
    -k "real_models or foundation or gradient" > "$OUT/test_cueq_gpu.log" 2>&1 && BACKENDS=xla,cueq
  tail -15 "$OUT/test_cueq_gpu.log"
  if [ $BACKENDS = xla ]; then  # some test failed: still time the float32 medium case, apart
    timeout $(( $(left) * 15 / 100 )) python3 benchmarks/speed.py --device gpu --tasks forces --repeats 5 --models medium \
      --dtypes float32 --backends xla,cueq --out "$OUT/speed_gpu_cueq" 2>&1 | grep "\[speed\]\|Error" | tail -5
  fi
fi

timeout $(( $(left) * 40 / 100 )) python3 benchmarks/speed.py --device gpu --tasks forces --repeats 10 --backends $BACKENDS \
  --out "$OUT/speed_gpu" 2>&1 | grep -v Warning | tail -12
timeout $(( $(left) * 40 / 100 )) python3 benchmarks/bench_train_step.py --device gpu --repeats 10 --dtypes float32 \
  --backends $BACKENDS --out "$OUT/train_step_gpu" 2>&1 | grep -v Warning | tail -8
# the scale run with the last backend listed (cuEquivariance's when it passed its tests)
[ "${SCALE:-1}" = 0 ] || timeout $(( $(left) - 10 )) python3 benchmarks/scale.py --sizes 1000,10000,100000 --device gpu \
  --torch --backend ${BACKENDS##*,} --repeats 3 --out "$OUT/scale_gpu" 2>&1 | grep -v Warning | tail -12
ls -la "$OUT"
