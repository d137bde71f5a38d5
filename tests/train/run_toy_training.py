"""Train the toy model in its own process (used by the kill-and-resume and multi-device tests).

usage: python run_toy_training.py OUT [--resume] [--sleep S] [--epochs N] [--n-devices K]
       [--checkpoint-interval S] [--sigterm-as-exit]
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


def config(epochs: int, n_devices: int = 1, checkpoint_interval_s: float = 30.0) -> TrainConfig:
    return TrainConfig(
        max_num_epochs=epochs,
        checkpoint_interval_s=checkpoint_interval_s,
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
    ap.add_argument("--checkpoint-interval", type=float, default=30.0)
    ap.add_argument("--sigterm-as-exit", action="store_true", help="SIGTERM handled as the jaxtl command does")
    args = ap.parse_args()
    if args.sigterm_as_exit:
        from jaxtl.cli import _terminate_as_exit

        _terminate_as_exit()
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
        config(args.epochs, args.n_devices, args.checkpoint_interval),
        args.out,
        resume=args.resume,
    )
    print("done", flush=True)


if __name__ == "__main__":
    main()
