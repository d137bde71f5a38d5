"""Train the toy model in its own process (used by the kill-and-resume and multi-device tests).

usage: python run_toy_training.py OUT [--resume] [--sleep S] [--epochs N] [--n-devices K]
"""

import argparse
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))

import train_toy as T  # noqa: E402

from jaxtl.train import LossConfig, OptimizerConfig, TrainConfig, shuffled, train  # noqa: E402


def config(epochs: int, n_devices: int = 1) -> TrainConfig:
    return TrainConfig(
        max_num_epochs=epochs,
        seed=11,
        dtype="float64",
        ema=True,
        n_devices=n_devices,
        loss=LossConfig(loss="stress", forces_weight=10.0),
        optimizer=OptimizerConfig(scheduler="plateau", scheduler_patience=1, lr_factor=0.5),
        progress_bar=False,
        plot=False,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--n-devices", type=int, default=1)
    args = ap.parse_args()
    data = T.dataset(4, seed=1)
    order = shuffled(data, seed=11)

    def batches(epoch):
        for b in order(epoch):
            time.sleep(args.sleep)  # lets the kill test land mid-run
            yield b

    train(
        T.predict,
        T.init_variables(0),
        batches,
        data[:2],
        config(args.epochs, args.n_devices),
        args.out,
        resume=args.resume,
    )
    print("done", flush=True)


if __name__ == "__main__":
    main()
