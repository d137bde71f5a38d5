#!/usr/bin/env bash
# The aspirin learning-curve grid (learning_curve_aspirin.sh) on one GPU machine, within one
# device call of LIMIT_S seconds (everything included), handed back so the grid goes on elsewhere.
#
# WORKERS processes (default 8) run the grid's command at once on the one GPU; each trains the
# next cell no other process holds (CELL/claim.json). Before they start, the cells committed in
# benchmarks/results/learning_curve_aspirin/results.json are imported (--import-cells), and a
# run folder carried to the machine (RUN, default runs/lc_aspirin: name it in the call's
# `carry`; stop this machine's workers first, or the GPU trains their cells too) is resumed,
# its unfinished cells from their checkpoints. RESERVE_S (default 90) before LIMIT_S the
# workers get SIGTERM, on which each writes the checkpoints of its last completed epoch, and
# $OUT receives:
#   lc_results.json  the grid's report: `--import-cells` it into the run folder of another machine;
#   lc_results.md    the same as a table;
#   lc_cells_*.tgz   the folders of the cells begun and not finished (checkpoints, metrics and
#                    device list; no claims), two cells an archive, at most five archives: unpacked
#                    into runs/lc_aspirin here (each cell's folder replaced, as below), the grid
#                    resumes them on this machine and their records name both devices;
#   lc_workers.log   the workers' last lines, and the unfinished cells left out of the archives.
# float32 matmuls at full precision (JAX_DEFAULT_MATMUL_PRECISION=highest): TF32 would make
# these cells coarser than the grid's CPU cells they are averaged with.
#
# Expects ../shared (or a copy in .gpu/shared, carried and linked there) and, on a machine
# without network, the wheels it lacks in .whl/ (see benchmarks/README.md).
#
#     OUT=runs/gpu_studies bash benchmarks/gpu_studies.sh [LIMIT_S]
#     # back here, with this machine's workers stopped:
#     for a in runs/gpu_studies/lc_cells_*.tgz; do
#       (cd runs/lc_aspirin && tar tzf "$OLDPWD/$a" | cut -d/ -f1,2 | sort -u | xargs rm -rf -- && tar xzf "$OLDPWD/$a")
#     done
#     bash benchmarks/learning_curve_aspirin.sh runs/lc_aspirin --import-cells runs/gpu_studies/lc_results.json
set -u
started=$(date +%s)
LIMIT=${1:-540}
RESERVE=${RESERVE_S:-90}
OUT=${OUT:-runs/gpu_studies}
RUN=${RUN:-runs/lc_aspirin}
WORKERS=${WORKERS:-8}
left() { echo $(( LIMIT - ($(date +%s) - started) )); }
mkdir -p "$OUT" "$RUN"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
[ -e ../shared ] || ln -s "$PWD/.gpu/shared" ../shared
# several processes share the GPU: each allocates what it needs
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest PYTHONUNBUFFERED=1
export PYTHON=${PYTHON:-python3}
nvidia-smi -L 2>/dev/null
$PYTHON -c "import jax; print('jax', jax.__version__, jax.devices())"

# a carried run folder's claims belong to the processes of the machine it came from
rm -f "$RUN"/cells/*/claim.json "$RUN"/cells/*/claim.json.*
# the committed cells first, in one process, so the workers start from the same folder
timeout "$(( $(left) > 60 ? 60 : $(left) ))" bash benchmarks/learning_curve_aspirin.sh "$RUN" \
  --import-cells benchmarks/results/learning_curve_aspirin/results.json --max-cells 0 > "$RUN/gpu_import.log" 2>&1
tail -3 "$RUN/gpu_import.log"
for i in $(seq 1 "$WORKERS"); do
  budget=$(( $(left) - RESERVE ))
  [ "$budget" -gt 30 ] || break
  timeout -s TERM -k 30 "$budget" bash benchmarks/learning_curve_aspirin.sh "$RUN" > "$RUN/gpu_worker_$i.log" 2>&1 &
  sleep 5  # each claims its cell before the next lists the grid
done
wait
cp "$RUN/results.json" "$OUT/lc_results.json" 2>/dev/null
cp "$RUN/results.md" "$OUT/lc_results.md" 2>/dev/null
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
rm -f "$RUN"/cells/*/claim.json "$RUN"/cells/*/claim.json.*
# two cells an archive (up to ~5 MB a cell: two checkpoints and the metrics; a cell writes its
# data anew when it starts), within the 16 MiB a returned file may have and 8 files in all
(cd "$RUN" && for d in cells/*; do [ -f "$d/cell.json" ] || [ ! -d "$d/run" ] || echo "$d"; done) > "$RUN/.unfinished"
head -n 10 "$RUN/.unfinished" | split -l 2 - "$RUN/.unfinished_"
for list in "$RUN"/.unfinished_*; do
  [ -e "$list" ] || continue
  tar czf "$OUT/lc_cells_${list##*_}.tgz" -C "$RUN" --exclude 'model' --exclude '*.log' --exclude '*.xyz' \
    --exclude '*.orbax-checkpoint-tmp*' -T "$list"
  rm -f "$list"
done
{
  for i in $(seq 1 "$WORKERS"); do [ -f "$RUN/gpu_worker_$i.log" ] && echo "== worker $i" && tail -n 2 "$RUN/gpu_worker_$i.log"; done
  tail -n +11 "$RUN/.unfinished" | sed 's/^/not returned (more than ten unfinished cells): /'
} > "$OUT/lc_workers.log"
grep -h "cell .*force RMSE" "$RUN"/gpu_worker_*.log 2>/dev/null | tail -20
ls -la "$OUT"
