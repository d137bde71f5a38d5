#!/usr/bin/env bash
# The aspirin learning-curve grid (learning_curve_aspirin.sh) on one GPU machine, within one
# device call of LIMIT_S seconds, handed back so the grid goes on elsewhere.
#
# WORKERS processes (default 8) run the grid's command at once on the one GPU; each trains the
# next cell no other process holds (CELL/claim.json). Before they start, the cells committed in
# benchmarks/results/learning_curve_aspirin/results.json are imported (--import-cells), and a
# run folder carried to the machine (RUN, default runs/lc_aspirin: name it in the call's
# `carry`) is resumed, its unfinished cells from their checkpoints. At LIMIT_S the workers are
# stopped (an unfinished cell loses at most its current epoch) and $OUT receives:
#   lc_results.json  the grid's report: `--import-cells` it into the run folder of another machine;
#   lc_results.md    the same as a table;
#   lc_cells_*.tgz   the folders of the cells begun and not finished (checkpoints and metrics,
#                    four cells an archive; no claims): unpacked into runs/lc_aspirin here, the grid resumes
#                    them on this machine (each records every device it trained on); unpack it
#                    before this machine trains those cells itself, whose folders it replaces;
#   lc_workers.log   the workers' last lines.
#
# Expects ../shared (or a copy in .gpu/shared, carried and linked there) and, on a machine
# without network, the wheels it lacks in .whl/ (see benchmarks/README.md).
#
#     OUT=runs/gpu_studies bash benchmarks/gpu_studies.sh [LIMIT_S]
#     for a in runs/gpu_studies/lc_cells_*.tgz; do tar xzf "$a" -C runs/lc_aspirin; done   # back here
#     bash benchmarks/learning_curve_aspirin.sh runs/lc_aspirin --import-cells runs/gpu_studies/lc_results.json
set -u
LIMIT=${1:-540}
OUT=${OUT:-runs/gpu_studies}
RUN=${RUN:-runs/lc_aspirin}
WORKERS=${WORKERS:-8}
mkdir -p "$OUT" "$RUN"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
[ -e ../shared ] || ln -s "$PWD/.gpu/shared" ../shared
# several processes share the GPU: each allocates what it needs
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 PYTHON=${PYTHON:-python3}
nvidia-smi -L 2>/dev/null
$PYTHON -c "import jax; print('jax', jax.__version__, jax.devices())"
started=$(date +%s)
left() { echo $(( LIMIT - ($(date +%s) - started) )); }

# a carried run folder's claims belong to the processes of the machine it came from
rm -f "$RUN"/cells/*/claim.json "$RUN"/cells/*/claim.json.*
# the committed cells first, in one process, so the workers start from the same folder
timeout "$(left)" bash benchmarks/learning_curve_aspirin.sh "$RUN" \
  --import-cells benchmarks/results/learning_curve_aspirin/results.json --max-cells 0 > "$OUT/lc_import.log" 2>&1
tail -3 "$OUT/lc_import.log"
for i in $(seq 1 "$WORKERS"); do
  timeout -s TERM "$(( $(left) - 20 ))" bash benchmarks/learning_curve_aspirin.sh "$RUN" > "$RUN/gpu_worker_$i.log" 2>&1 &
  sleep 5  # each claims its cell before the next lists the grid
done
wait
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
# the report of every finished cell (the workers write it after each cell; rewritten here once)
timeout 60 bash benchmarks/learning_curve_aspirin.sh "$RUN" --max-cells 0 > /dev/null 2>&1
cp "$RUN/results.json" "$OUT/lc_results.json"
cp "$RUN/results.md" "$OUT/lc_results.md"
rm -f "$RUN"/cells/*/claim.json "$RUN"/cells/*/claim.json.*
# four cells an archive (about 3 MB each: two checkpoints and the metrics; a cell writes its
# data anew when it starts), within the 16 MiB a returned file may have
(cd "$RUN" && for d in cells/*; do [ -f "$d/cell.json" ] || [ ! -d "$d/run" ] || echo "$d"; done) \
  | split -l 4 - "$OUT/.unfinished_"
for list in "$OUT"/.unfinished_*; do
  [ -e "$list" ] || continue
  tar czf "$OUT/lc_cells_${list##*_}.tgz" -C "$RUN" --exclude 'model' --exclude '*.log' --exclude '*.xyz' \
    --exclude '*.orbax-checkpoint-tmp*' -T "$list"
  rm -f "$list"
done
for i in $(seq 1 "$WORKERS"); do echo "== worker $i"; tail -n 2 "$RUN/gpu_worker_$i.log"; done > "$OUT/lc_workers.log"
grep -h "finished\|cell .*force RMSE" "$RUN"/gpu_worker_*.log | tail -20
ls -la "$OUT"
