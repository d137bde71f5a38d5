"""Frozen transfer learning on real data (arXiv 2502.15582's experiment, small scale).

Foundation: `spice-mace` of jaxtl.datasets (a small MACE trained on SPICE, wB97M).
Target: rMD17 aspirin (PBE/def2-SVP, another level of theory), `rmd17-aspirin-{train,test}`.
For each fraction of the aspirin training pool: fine-tune with mace-torch's --freeze
0/5/6 and a finer choice (only `interactions_1`, the products and the readouts
train), and train the same architecture from scratch; all are tested on the same
held-out aspirin structures.

    python benchmarks/finetune_aspirin.py --out runs/aspirin            # the study
    python benchmarks/finetune_aspirin.py --out /tmp/a --fast           # seconds; run by the tests

Compute is budgeted in optimisation steps per run (`--steps`, at least
`--min-epochs` epochs), identical for every strategy at a given fraction, so the
comparison is at equal cost, not at convergence. Outputs: OUT/results.json,
OUT/results.md (table) and OUT/learning_curves.png (log-log).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def finer_labels(params):
    """Our finer choice: freeze the embedding and the first interaction block only."""
    from jaxtl.finetune import pattern_labels

    return pattern_labels(params, freeze=["node_embedding*", "interactions_0*"])


STRATEGIES = {"f0": 0, "f5": 5, "f6": 6, "finer": finer_labels}


def write_subset(src: Path, dst: Path, n: int, seed: int) -> Path:
    import ase.io

    frames = ase.io.read(src, ":")
    idx = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(dst, [frames[i] for i in idx], format="extxyz")
    return dst


def train_config(epochs: int, lr: float, seed: int):
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    return TrainConfig(
        max_num_epochs=epochs,
        seed=seed,
        progress_bar=False,
        plot=False,
        ema=True,
        ema_decay=0.99,
        optimizer=OptimizerConfig(lr=lr, scheduler="cosine", decay_epochs=epochs, min_lr_factor=0.05),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/aspirin")
    p.add_argument("--foundation", default=None, help="a mace-torch file (default: jaxtl.datasets' spice-mace)")
    p.add_argument(
        "--data",
        default=None,
        help="the folder of aspirin_{train,test}.extxyz and 3bpa_300K.extxyz "
        "(default: where jaxtl.datasets finds them)",
    )
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--strategies", nargs="+", default=["f0", "f5", "f6", "finer", "scratch"])
    p.add_argument("--steps", type=int, default=600, help="optimisation steps per run (default 600)")
    p.add_argument("--min-epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--n-test", type=int, default=300, help="held-out aspirin structures evaluated (default 300)")
    p.add_argument("--pool", type=int, default=None, help="use only this many pool structures (default all 1200)")
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="tiny settings for the test suite")
    p.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="only merge results.json files of earlier runs (e.g. one per machine) into OUT",
    )
    args = p.parse_args(argv)
    from _data import data_path

    args.foundation = args.foundation or str(data_path("spice-mace"))
    args.data = args.data or str(data_path("rmd17-aspirin-train").parent)
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.fast:
        args.fractions, args.steps, args.min_epochs, args.n_test, args.pool = [0.5], 4, 1, 10, 20
        args.strategies = ["f6", "scratch"]
    logging.basicConfig(level=logging.WARNING)

    from jaxtl.model_io import load_model_files

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    foundation = converted_foundation(args.foundation, out)
    pool = Path(args.data) / "aspirin_train.extxyz"
    if args.pool:
        pool = write_subset(pool, out / "pool.xyz", args.pool, args.seed)
    test = write_subset(Path(args.data) / "aspirin_test.extxyz", out / "test.xyz", args.n_test, args.seed)
    n_pool = sum(1 for line in open(pool) if line.strip().isdigit())
    f_config, _, _ = load_model_files(foundation)
    scratch_model = {
        k: v for k, v in f_config.to_dict().items() if k not in ("atomic_numbers", "avg_num_neighbors", "dtype")
    }

    rows = []
    results_path = out / "results.json"
    for fraction in args.fractions:
        n_train = max(2, int(round(fraction * n_pool * 0.9)))
        epochs = max(args.min_epochs, math.ceil(args.steps / math.ceil(n_train / args.batch_size)))
        for name in args.strategies:
            run_dir = out / f"{name}_{int(round(fraction * 100))}pct"
            t0 = time.time()
            freeze = None if name == "scratch" else STRATEGIES[name]
            metrics, n_trainable = run_one(
                freeze, foundation, scratch_model, pool, test, run_dir, fraction, epochs, args
            )
            test_m = metrics["test"]["all"]
            row = {
                "fraction": fraction,
                "n_train": n_train,
                "strategy": name,
                "epochs": epochs,
                "steps": epochs * math.ceil(n_train / args.batch_size),
                "energy_rmse": test_m["energy_rmse"],
                "forces_rmse": test_m["forces_rmse"],
                "energy_mae": test_m["energy_mae"],
                "forces_mae": test_m["forces_mae"],
                "n_trainable": n_trainable,
                "wall_s": time.time() - t0,
            }
            rows.append(row)
            results_path.write_text(json.dumps(rows, indent=2))
            print(
                f"{name:8s} {fraction:5.0%} n={n_train:5d}: E {row['energy_rmse']:8.2f} meV/atom  "
                f"F {row['forces_rmse']:8.2f} meV/A  ({row['wall_s']:.0f} s)",
                flush=True,
            )
    (out / "results.md").write_text(table(rows))
    print(table(rows))
    plot(rows, out / "learning_curves.png")


def converted_foundation(model_file, out: Path, check: bool = True) -> Path:
    """A mace-torch `.model` file converted once into OUT/foundation (float32; verified
    against mace-torch when `check`); later runs in OUT reuse the folder."""
    from jaxtl.convert.convert import convert_file

    folder = out / "foundation"
    if not (folder / "config.json").exists():
        convert_file(model_file, folder, dtype="float32", check=check, log=lambda *_: None)
    return folder


def run_one(
    freeze, foundation, scratch_model: dict, pool, test, run_dir: Path, fraction: float, epochs: int, args
) -> tuple[dict, int | None]:
    """One cell of a data-efficiency study: fine-tune with `freeze` (None: train
    `scratch_model` from scratch, lr 0.01) on `fraction` of `pool`, test on `test`.
    Returns (final metrics, number of trained parameters or None for scratch)."""
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
    from jaxtl.train.data import DataConfig
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    if freeze is None:
        data = DataConfig(
            train_file=str(pool),
            test_file=str(test),
            batch_size=args.batch_size,
            train_fraction=fraction,
            seed=args.seed,
        )
        result = train_from_scratch(ScratchConfig(data, scratch_model, train_config(epochs, 0.01, args.seed)), run_dir)
        return result.metrics, None
    data = DataConfig(
        train_file=str(pool),
        test_file=str(test),
        batch_size=args.batch_size,
        valid_batch_size=args.batch_size,
        train_fraction=fraction,
        seed=args.seed,
    )
    config = FinetuneConfig(
        FoundationConfig(str(foundation)),
        data,
        StrategyConfig(freeze=freeze),
        train_config(epochs, args.lr, args.seed),
        e0s="average",
    )
    ft = finetune(config, run_dir, log=lambda *_: None)
    return ft.train.metrics, ft.report.n_trainable


def merge(files, out: Path) -> None:
    """One table and plot from several runs' results (later files win on duplicates)."""
    by_key = {}
    for f in files:
        device = Path(f).stem.replace("results_", "") or "?"
        for r in json.loads(Path(f).read_text()):
            by_key[(r["fraction"], r["strategy"])] = {**r, "device": r.get("device", device)}
    order = ["f0", "f5", "f6", "finer", "scratch", "scratch_3000"]
    rows = sorted(
        by_key.values(), key=lambda r: (r["fraction"], order.index(r["strategy"]) if r["strategy"] in order else 9)
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    (out / "results.md").write_text(table(rows))
    plot(rows, out / "learning_curves.png")
    print(table(rows))


def table(rows) -> str:
    """Markdown: errors on the held-out set beside the cost (steps, wall clock incl. compile and evaluation)."""
    lines = [
        "| fraction | n_train | strategy | trainable params | steps | E RMSE (meV/atom) | F RMSE (meV/A) "
        "| wall (s) | steps/s | device |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = r.get("steps") or r["epochs"] * math.ceil(r["n_train"] / 10)
        lines.append(
            f"| {r['fraction']:.0%} | {r['n_train']} | {r['strategy']} | {r['n_trainable'] or 'all'} | "
            f"{steps} | {r['energy_rmse']:.2f} | {r['forces_rmse']:.1f} | {r['wall_s']:.0f} | "
            f"{steps / r['wall_s']:.1f} | {r.get('device', 'cpu')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path: Path) -> None:
    from jaxtl.train.plot import plot_data_efficiency

    plot_data_efficiency(
        rows,
        path,
        "strategy",
        "SPICE MACE -> rMD17 aspirin: frozen fine-tuning vs scratch (jaxtl)",
        xlabel="aspirin training structures",
    )


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    main()
