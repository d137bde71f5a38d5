"""Data efficiency on two materials sets: the reactive CO2/Ni(100) set and the Al-Ni-Ti alloys.

For each fraction of a training pool, a small MACE is trained from scratch; with
`--foundation` (a MACE-MP .model file, a jaxtl model folder, or a released model's name
such as mace-mp-0-small) the same fractions are also fine-tuned with mace-torch's
`--freeze 0/5/6`. Every run at a fraction gets the same number of optimisation steps,
and all runs of a data set are tested on the same held-out structures.

Data (../shared/data, VASP PBE):
  co2_ni100  CO2 reacting on Ni(100), 991 structures of 39 atoms (C, O, Ni)
  alniti     Al-Ni-Ti alloys, 2187 structures of 1-56 atoms; about 11 % are active-
             learning extrapolation configurations with forces up to 416 eV/A: structures
             with max |F| > --max-force (default 20 eV/A) are dropped, and the count is reported

    python benchmarks/finetune_materials.py                                   # scratch curves
    python benchmarks/finetune_materials.py --foundation mace-mp-0-small      # + frozen fine-tuning
    python benchmarks/finetune_materials.py --fast --out /tmp/m               # seconds; run by the tests

Writes OUT/<dataset>/results.{json,md} and learning_curves.png.
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
from finetune_aspirin import converted_foundation, run_one, table  # noqa: E402  (one way to run a cell)

SHARED = HERE.parent.parent / "shared"
DATASETS = {"co2_ni100": "co2_ni100/co2_ni100.extxyz", "alniti": "alniti/alniti.extxyz"}
SCRATCH_MODEL = dict(
    r_max=5.0,
    num_bessel=8,
    hidden_irreps="32x0e",
    max_ell=2,
    correlation=(3, 3),
    radial_MLP=(32, 32, 32),
    MLP_irreps="16x0e",
)
FREEZE = {"f0": 0, "f5": 5, "f6": 6}


def split_pool_and_test(
    src: Path, out: Path, test_fraction: float, max_force: float | None, seed: int, max_test: int | None = None
):
    """Write OUT/pool.xyz and OUT/test.xyz (a fixed random test set, at most `max_test`); return counts."""
    import ase.io

    frames = ase.io.read(src, ":")
    kept = [a for a in frames if max_force is None or np.abs(a.get_forces()).max() <= max_force]
    order = np.random.default_rng(seed).permutation(len(kept))
    n_held = max(1, int(round(test_fraction * len(kept))))
    n_test = min(n_held, max_test or n_held)
    ase.io.write(out / "test.xyz", [kept[i] for i in sorted(order[:n_test])], format="extxyz")
    ase.io.write(out / "pool.xyz", [kept[i] for i in sorted(order[n_held:])], format="extxyz")
    return {
        "read": len(frames),
        "dropped_max_force": len(frames) - len(kept),
        "test": n_test,
        "pool": len(kept) - n_held,
    }


def run_dataset(name: str, args) -> list[dict]:
    out = Path(args.out) / name
    out.mkdir(parents=True, exist_ok=True)
    max_force = args.max_force if name == "alniti" else None
    counts = split_pool_and_test(
        Path(args.data) / DATASETS[name], out, args.test_fraction, max_force, args.seed, args.max_test
    )
    if args.pool:
        counts["pool"] = min(counts["pool"], args.pool)
        import ase.io

        ase.io.write(out / "pool.xyz", ase.io.read(out / "pool.xyz", f":{counts['pool']}"), format="extxyz")
    print(f"[{name}] {counts}", flush=True)
    pool, test = out / "pool.xyz", out / "test.xyz"
    strategies = ["scratch"] + (list(FREEZE) if args.foundation else [])
    rows = []
    for fraction in args.fractions:
        n_train = max(2, int(round(fraction * counts["pool"] * 0.9)))
        epochs = max(args.min_epochs, math.ceil(args.steps / math.ceil(n_train / args.batch_size)))
        for strategy in strategies:
            run_dir = out / f"{strategy}_{int(round(fraction * 100))}pct"
            t0 = time.time()
            metrics, n_trainable = run_one(
                FREEZE.get(strategy), args.foundation, SCRATCH_MODEL, pool, test, run_dir, fraction, epochs, args
            )
            test_m = metrics["test"]["all"]
            row = {
                "dataset": name,
                "fraction": fraction,
                "n_train": n_train,
                "strategy": strategy,
                "epochs": epochs,
                "energy_rmse": test_m["energy_rmse"],
                "forces_rmse": test_m["forces_rmse"],
                "energy_mae": test_m["energy_mae"],
                "forces_mae": test_m["forces_mae"],
                "n_trainable": n_trainable,
                "wall_s": time.time() - t0,
                "data": counts,
            }
            rows.append(row)
            (out / "results.json").write_text(json.dumps(rows, indent=2))
            print(
                f"[{name}] {strategy:8s} {fraction:5.0%} n={n_train:5d}: E {row['energy_rmse']:8.2f} meV/atom  "
                f"F {row['forces_rmse']:8.2f} meV/A  ({row['wall_s']:.0f} s)",
                flush=True,
            )
    (out / "results.md").write_text(f"# {name}: {counts}\n\n" + table(rows))
    from jaxtl.train.plot import plot_data_efficiency

    title = f"{name}: " + ("frozen fine-tuning vs scratch" if args.foundation else "scratch") + " (jaxtl)"
    plot_data_efficiency(rows, out / "learning_curves.png", "strategy", title, xlabel="training structures")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/materials")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument(
        "--foundation",
        default=None,
        help="MACE-MP foundation (.model file, jaxtl folder or name); without it: scratch only",
    )
    p.add_argument("--data", default=str(SHARED / "data"))
    p.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5, 1.0])
    p.add_argument("--steps", type=int, default=300, help="optimisation steps per run (default 300)")
    p.add_argument("--min-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--test-fraction", type=float, default=0.1, help="held-out test fraction (default 0.1)")
    p.add_argument("--max-force", type=float, default=20.0, help="alniti: drop structures with max |F| above (eV/A)")
    p.add_argument("--pool", type=int, default=None, help="use only the first N pool structures")
    p.add_argument("--max-test", type=int, default=None, help="evaluate at most N of the held-out structures")
    p.add_argument("--lr", type=float, default=0.005, help="fine-tuning learning rate (scratch uses 0.01)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="tiny settings for the test suite")
    args = p.parse_args(argv)
    if args.fast:
        args.fractions, args.steps, args.min_epochs, args.pool, args.max_test = [0.5], 3, 1, 12, 6
    logging.basicConfig(level=logging.WARNING)
    if not (Path(args.data) / DATASETS[args.datasets[0]]).exists():
        print(f"skipped: {args.data} has no {DATASETS[args.datasets[0]]}", file=sys.stderr)
        return 0
    if args.foundation and Path(args.foundation).is_file():  # a mace-torch file: convert once (verified unless --fast)
        args.foundation = str(converted_foundation(args.foundation, Path(args.out), check=not args.fast))
    for name in args.datasets:
        run_dataset(name, args)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
