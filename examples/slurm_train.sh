#!/bin/bash
# Train a MACE with jaxtl on N nodes x M GPUs under SLURM: one process per GPU.
#
#   sbatch --nodes=4 --gpus-per-node=8 --ntasks-per-node=8 examples/slurm_train.sh
#
# Every task runs the same command. `--distributed` makes each one call
# jax.distributed.initialize(), which reads SLURM_JOB_ID, SLURM_STEP_NODELIST,
# SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID: the coordinator is the first node of
# the step (port 61440 + SLURM_JOB_ID % 4096, or $JAX_COORDINATOR_PORT), and task
# SLURM_LOCALID drives GPU number SLURM_LOCALID of its node. So every task must see
# all GPUs of its node: do not bind GPUs per task (no --gpus-per-task, no
# per-task CUDA_VISIBLE_DEVICES).
#
# --batch-size is the global batch (structures per optimiser step over all GPUs) and
# must be a multiple of N x M. The run folder (--out) must be on a file system that
# every node sees: all processes write the Orbax checkpoints there together, and
# process 0 writes the logs and the final model.
#
# If a task dies, the others stop within --heartbeat-timeout seconds; resubmit with
# RESUME=1 (same OUT, same number of nodes and GPUs) to continue bit for bit from the
# last checkpoint.
#
# For sets larger than memory, prepare once (on one node) and train from the folder;
# each process then reads only the structures of its own batches:
#   jaxtl prepare data/*.xyz --out prepared/ --r-max 5.0 --shard-size 10000
#   TRAIN=prepared/ sbatch ... examples/slurm_train.sh
#
#SBATCH --job-name=jaxtl-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=%x-%j.out

set -euo pipefail

TRAIN=${TRAIN:-train.xyz}
OUT=${OUT:-runs/jaxtl-slurm}              # keep it when resubmitting with RESUME=1
BATCH=${BATCH:-$((SLURM_NTASKS * 4))}   # 4 structures per GPU and step
RESUME_FLAG=${RESUME:+--resume}

# One process per GPU must not grab all GPU memory of the node.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# Proxies can make the coordinator connection hang (see jax.distributed.initialize).
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY

srun --kill-on-bad-exit=1 jaxtl train --distributed \
    --train "$TRAIN" --out "$OUT" --batch-size "$BATCH" \
    --hidden-irreps 128x0e+128x1o --r-max 5.0 --epochs 200 --dtype float32 \
    --heartbeat-timeout 120 $RESUME_FLAG
