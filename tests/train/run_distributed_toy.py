"""One process of a (multi-process) toy training job, for tests/train/test_distributed.py.

    python run_distributed_toy.py OUT --num-processes P --process-id I --port PORT [--resume]
    python run_distributed_toy.py OUT                      (a single process)

Local devices come from XLA_FLAGS (--xla_force_host_platform_device_count). The job
first runs `STEPS` optimiser steps by hand (writing OUT/steps-I.json: the loss of each
step), then trains with `jaxtl.train.train` into OUT/run (checkpoints, model).
--sleep S pauses S seconds at the start of each epoch (gives a test time to kill).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
from local_job import add_job_args, join_local_job

STEPS = 4


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    add_job_args(p)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--skip-steps", action="store_true")
    p.add_argument("--cache", default=None, help="persistent compilation cache shared by the test's runs")
    args = p.parse_args()
    if args.cache:  # every program, however small: most of a run's time is compiling
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    join_local_job(args, heartbeat_timeout_s=5, initialization_timeout_s=60)
    jax.config.update("jax_enable_x64", True)

    import jax.numpy as jnp
    import numpy as np
    import train_toy as T

    from jaxtl.train import LossConfig, OptimizerConfig, TrainConfig, make_optimizer, shuffled, train
    from jaxtl.train.ema import ema_init
    from jaxtl.train.parallel import group_batches, make_mesh, replicate
    from jaxtl.train.step import TrainState, make_train_step

    out = Path(args.out)
    # two padded shapes, so that steps are grouped by shape
    data = T.dataset(7, seed=4) + T.dataset(3, seed=5, n_nodes=24, n_edges=96, n_graphs=6)
    valid = T.dataset(3, seed=6)
    v = T.init_variables(0)
    n_devices = jax.device_count()

    if not args.skip_steps:
        mesh = make_mesh(n_devices)
        opt = make_optimizer(OptimizerConfig())
        weights = {k: jnp.asarray(x) for k, x in LossConfig(loss="stress").weights().items()}
        step, counter = make_train_step(T.predict, "stress", 0.01, True, opt, 0.99, mesh)
        state = TrainState(jnp.zeros([], jnp.int32), v["params"], opt.init(v["params"]), ema_init(v["params"]))
        state, constants = replicate((state, v["constants"]), mesh)
        losses = []
        for _, stacked, _ in group_batches(data, mesh, np.float64):
            state, stats = step(state, constants, stacked, jnp.asarray(0.01), weights)
            losses.append(float(stats["loss"]))
            if len(losses) == STEPS:
                break
        (out / f"steps-{jax.process_index()}.json").write_text(
            json.dumps({"losses": losses, "compiles": counter["train"], "devices": n_devices})
        )

    cfg = TrainConfig(
        max_num_epochs=args.epochs,
        dtype="float64",
        n_devices=n_devices,
        progress_bar=False,
        plot=False,
        ema=True,
        loss=LossConfig(loss="stress"),
    )
    inner = shuffled(data, 0)

    def batches(epoch):
        items = inner(epoch)
        if args.sleep:
            time.sleep(args.sleep)
        return items

    res = train(T.predict, v, batches, valid, cfg, out / "run", resume=args.resume)
    print("compiles", json.dumps(res.n_compiles), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
