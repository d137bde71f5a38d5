"""mace-torch's own `--freeze` fine-tuning and scratch training on the cells of a jaxtl learning curve.

    python benchmarks/learning_curve_mace_torch.py --grid runs/lc_aspirin --max-epochs 500 --out runs/lc_aspirin_mace_torch

On a CPU shared with other jobs, set OMP_NUM_THREADS=1: torch's threads spin waiting on each
other whenever one of them is descheduled, which makes a step several times slower.

For each (strategy, seed) at `--fraction` (default 10 %, f5 and scratch, seeds of the grid):
the same training subset and validation set as the jaxtl cell (`jaxtl.learning_curve.split_pool`,
same seed), the same settings read from the grid's grid_config.json (batch size, learning rates,
plateau schedule, early-stopping patience, EMA, loss weights, E0s, dtype; the epoch cap too
unless `--max-epochs` is given), trained by `mace_run_train` and tested on all of the grid's test file with `mace_eval_configs`. Writes
OUT/results.json and OUT/results.md: mace-torch's rows beside jaxtl's for the same cells.

The 2022 SPICE file is re-saved first as mace-torch 0.3.16 needs (r_max a tensor buffer, a
`heads` attribute; ../shared/DATA.md). mace-torch reduces the foundation to the data's elements,
so its trainable counts differ from jaxtl's 15-element model (the computed function is the same).
mace-torch 0.3.16 ends training early only in a distributed run: a single process logs
"Stopping optimization after N epochs without improvement" once its plain patience is spent
and goes on to the epoch cap (mace/tools/train.py: the exit flag exists only with
`distributed`). Its checkpoints are written at each lower validation loss and the final model
is the last of them, so its cells keep the best-validation weights, like jaxtl's, after
training to the cap: at least as long as jaxtl's cells, which stop by their rule.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MACE_MODEL_FLAGS = {  # mace-torch flags of scratch cells, from the foundation's jaxtl config
    "model_type": "--model",
    "hidden_irreps": "--hidden_irreps",
    "r_max": "--r_max",
    "num_bessel": "--num_radial_basis",
    "num_polynomial_cutoff": "--num_cutoff_basis",
    "max_ell": "--max_ell",
    "num_interactions": "--num_interactions",
    "MLP_irreps": "--MLP_irreps",
    "interaction_cls_first": "--interaction_first",
    "interaction_cls": "--interaction",
}


def resave_foundation(src: Path, dst: Path, dtype: str) -> Path:
    """The 2022 SPICE model as mace-torch 0.3.16's `--foundation_model` takes it: r_max,
    num_interactions and atomic_numbers as tensor buffers (plain Python values in the 2022
    file), a `heads` attribute."""
    import mace  # noqa: F401  (unpickling needs mace's classes)
    import torch

    if dst.exists():
        return dst
    model = torch.load(src, weights_only=False, map_location="cpu")
    r_max = float(model.r_max)
    del model.r_max
    model.register_buffer("r_max", torch.tensor(r_max, dtype=torch.get_default_dtype()))
    model.register_buffer("num_interactions", torch.tensor(len(model.interactions), dtype=torch.int64))
    atomic_numbers = [int(z) for z in model.atomic_numbers]
    del model.atomic_numbers
    model.register_buffer("atomic_numbers", torch.tensor(atomic_numbers, dtype=torch.int64))
    model.heads = ["Default"]
    model = model.double() if dtype == "float64" else model.float()
    torch.save(model, dst)
    return dst


def scratch_flags(foundation_config: dict) -> list[str]:
    c = foundation_config
    flags = []
    for key, flag in MACE_MODEL_FLAGS.items():
        flags += [flag, str(int(c[key]) if isinstance(c[key], float) and key != "r_max" else c[key])]
    flags += [
        "--correlation",
        str(c["correlation"][0]),
        "--radial_MLP",
        json.dumps(list(c["radial_MLP"])),
        "--scaling",
        "rms_forces_scaling",
    ]
    return flags


def labelled(path: str, keys: dict) -> list:
    """Frames of `path` with their labels under REF_energy / REF_forces (from the grid's keys,
    else the ASE calculator's results, as jaxtl reads them), which mace-torch is told to read."""
    import ase.io

    frames = ase.io.read(path, ":")
    for atoms in frames:
        energy = atoms.info.get(keys["energy"])
        forces = atoms.arrays.get(keys["forces"])
        if energy is None or forces is None:
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info["REF_energy"], atoms.arrays["REF_forces"] = energy, forces
    return frames


def write_cell_data(config: dict, seed: int, fraction: float, folder: Path) -> tuple[Path, Path, int]:
    """The jaxtl cell's training subset and validation set (same function, same seed)."""
    import ase.io

    from jaxtl.learning_curve import split_pool

    folder.mkdir(parents=True, exist_ok=True)
    frames = labelled(config["data"]["train_file"], _keys(config))
    split = split_pool(len(frames), config["data"]["valid_fraction"], seed)
    subset = split.subset(fraction)
    train, valid = folder / "train.xyz", folder / "valid.xyz"
    ase.io.write(train, [frames[i] for i in subset], format="extxyz")
    ase.io.write(valid, [frames[i] for i in split.valid], format="extxyz")
    return train, valid, len(subset)


def _keys(config: dict) -> dict:
    return {"energy": config["data"]["energy_key"], "forces": config["data"]["forces_key"]}


def test_errors(model: Path, test_file: str, folder: Path, dtype: str, keys: dict) -> dict:
    """Energy RMSE (meV/atom) and force-component RMSE (meV/A) of `model` on all of `test_file`."""
    import ase.io

    out = folder / "test_predictions.xyz"
    subprocess.run(
        [
            shutil.which("mace_eval_configs") or "mace_eval_configs",
            "--configs",
            test_file,
            "--model",
            str(model),
            "--output",
            str(out),
            "--default_dtype",
            dtype,
            "--batch_size",
            "20",
            "--device",
            "cpu",
        ],
        check=True,
    )
    pred, ref = ase.io.read(out, ":"), labelled(test_file, keys)
    d_e = np.array([(p.info["MACE_energy"] - r.info["REF_energy"]) / len(r) for p, r in zip(pred, ref)])
    d_f = np.concatenate([(p.arrays["MACE_forces"] - r.arrays["REF_forces"]).ravel() for p, r in zip(pred, ref)])
    return {
        "energy_rmse": 1000 * float(np.sqrt(np.mean(d_e**2))),
        "forces_rmse": 1000 * float(np.sqrt(np.mean(d_f**2))),
        "n_test": len(ref),
    }


def epochs_run(folder: Path) -> int | None:
    """Epochs mace-torch evaluated (its results/*_train.txt records one line per evaluation)."""
    epochs = []
    for path in folder.glob("results/*_train.txt"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record.get("mode") == "eval" and record.get("epoch") is not None:
                epochs.append(record["epoch"])
    return max(epochs) + 1 if epochs else None


def run_cell(
    config: dict, foundation: Path, f_config: dict, strategy: str, seed: int, fraction: float, folder: Path
) -> dict:
    """Train one cell with `mace_run_train` and test it; the record is cached in folder/cell.json.
    An interrupted cell continues from mace-torch's latest checkpoint (`--restart_latest`)."""
    done = folder / "cell.json"
    d, c, t = config["data"], config["convergence"], config["train"]
    if done.exists():
        record = json.loads(done.read_text())
        if record["max_epochs"] != c["max_epochs"]:
            raise ValueError(
                f"{done} was trained with max_epochs {record['max_epochs']}, not {c['max_epochs']}: use another --out"
            )
        return record
    train, valid, n_train = write_cell_data(config, seed, fraction, folder)
    name = f"{strategy}_s{seed}"
    args = [
        shutil.which("mace_run_train") or "mace_run_train",
        "--name",
        name,
        "--seed",
        str(seed),
        "--work_dir",
        str(folder),
        "--train_file",
        str(train),
        "--valid_file",
        str(valid),
        "--energy_key",
        "REF_energy",
        "--forces_key",
        "REF_forces",
        "--E0s",
        t["e0s"],
        "--batch_size",
        str(d["batch_size"]),
        "--valid_batch_size",
        str(d["batch_size"]),
        "--lr",
        str(t["scratch_lr"] if strategy == "scratch" else t["lr"]),
        "--scheduler",
        "ReduceLROnPlateau",
        "--scheduler_patience",
        str(c["scheduler_patience"]),
        "--lr_factor",
        str(c["lr_factor"]),
        "--patience",
        str(c["patience"]),
        "--max_num_epochs",
        str(c["max_epochs"]),
        "--eval_interval",
        "1",
        "--loss",
        "weighted",
        "--energy_weight",
        str(t["energy_weight"]),
        "--forces_weight",
        str(t["forces_weight"]),
        "--default_dtype",
        t["dtype"],
        "--device",
        "cpu",
        "--error_table",
        "PerAtomRMSE",
        "--amsgrad",
        "--clip_grad",
        "10",
        "--restart_latest",
    ]
    if t["ema"]:
        args += ["--ema", "--ema_decay", str(t["ema_decay"])]
    if strategy == "scratch":
        args += scratch_flags(f_config)
    else:
        level = int(strategy[1:])
        args += ["--foundation_model", str(foundation), "--multiheads_finetuning", "False"]
        args += ["--freeze", str(level)] if level else []
    t0 = time.perf_counter()
    subprocess.run(args, check=True, cwd=folder)
    wall = time.perf_counter() - t0
    record = {
        "strategy": strategy,
        "seed": seed,
        "fraction": fraction,
        "n_train": n_train,
        "wall_s": wall,
        "max_epochs": c["max_epochs"],
        "epochs_run": epochs_run(folder),
        "command": " ".join(args),
        **test_errors(folder / f"{name}.model", d["test_file"], folder, t["dtype"], _keys(config)),
    }
    done.write_text(json.dumps(record, indent=1))
    return record


def spread(xs) -> str:
    xs = np.asarray([x for x in xs if x is not None], float)
    if xs.size == 0:
        return "-"
    std = xs.std(ddof=1) if xs.size > 1 else 0.0
    return f"{xs.mean():.2f} ± {std:.2f} [{xs.min():.2f}, {xs.max():.2f}]"


def _rule(convergence: dict) -> str:
    """A jaxtl grid's convergence rule in a few words."""
    if convergence["patience"] >= convergence["max_epochs"]:
        return f"to the {convergence['max_epochs']}-epoch cap"
    rel = convergence.get("min_rel_improvement", 0.0)
    return f"{rel:.0%} / {convergence['patience']}-epoch rule, cap {convergence['max_epochs']}"


def _check_same_cells(config: dict, other: dict, folder: Path) -> None:
    """Another grid compared must draw the same cells: same data and training settings."""
    for key in ("data", "train"):
        if other[key] != config[key]:
            raise ValueError(f"{folder}: its {key} settings differ from --grid's, so its cells are not the same work")


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return out.stdout.strip() or "unknown"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True, help="the jaxtl learning-curve folder (grid_config.json, foundation/)")
    p.add_argument("--out", required=True)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--strategies", nargs="+", default=["f5", "scratch"])
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: every seed of the grid")
    p.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="the epoch cap (default: the grid's); the comparison in benchmarks/results runs both codes to a cap of 500",
    )
    p.add_argument(
        "--jaxtl-grids",
        nargs="*",
        default=[],
        help="more jaxtl grids of the same data and settings (another convergence rule) to show beside --grid's",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write results.md/json from the cells finished so far, training nothing",
    )
    args = p.parse_args(argv)
    import mace
    import torch

    grid, out = Path(args.grid), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((grid / "grid_config.json").read_text())
    for key in ("foundation", "train_file", "test_file"):  # mace_run_train runs in the cell's folder
        config["data"][key] = str(Path(config["data"][key]).resolve())
    if args.max_epochs is not None:
        config["convergence"]["max_epochs"] = args.max_epochs
    f_config = json.loads((grid / "foundation" / "config.json").read_text())
    seeds = args.seeds if args.seeds is not None else list(range(config["grid"]["seeds"]))
    folders = [(s, seed, out / f"{s}_s{seed}") for s in args.strategies for seed in seeds]
    if args.report_only:
        rows = [json.loads((f / "cell.json").read_text()) for _, _, f in folders if (f / "cell.json").exists()]
    else:
        foundation = resave_foundation(
            Path(config["data"]["foundation"]), out / "foundation_resaved.model", config["train"]["dtype"]
        )
        rows = [run_cell(config, foundation, f_config, s, seed, args.fraction, f) for s, seed, f in folders]
    jaxtl_rows = {}  # "jaxtl (its rule)" -> cells of each grid compared
    for folder in [grid, *map(Path, args.jaxtl_grids)]:
        if (folder / "results.json").exists():
            summary = json.loads((folder / "results.json").read_text())
            _check_same_cells(json.loads((grid / "grid_config.json").read_text()), summary["config"], folder)
            jaxtl_rows[f"jaxtl ({_rule(summary['config']['convergence'])})"] = [
                c
                for c in summary["cells"]
                if c["fraction"] == args.fraction and c["strategy"] in args.strategies and c["seed"] in seeds
            ]
    intro = (
        f"Cells finished: {len(rows)} of {len(folders)} (mace-torch). "
        "Test errors on all of the grid's test file, mean ± std [min, max] over seeds; same subsets, "
        "validation sets and settings (grid_config.json). jaxtl's cells stop by the grid's convergence "
        "rule; mace-torch 0.3.16 trains a single process to the epoch cap, keeping its best-validation "
        "checkpoint, so the epoch and wall columns are not comparable."
    )
    lines = [
        f"# mace-torch beside jaxtl at {args.fraction:.0%} of the pool",
        "",
        intro,
        "",
        "| strategy | code | seeds | E RMSE (meV/atom) | F RMSE (meV/A) | epochs run | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in args.strategies:
        for code, cells in (
            (
                f"mace-torch (to the {config['convergence']['max_epochs']}-epoch cap)",
                [r for r in rows if r["strategy"] == s],
            ),
            *((name, [c for c in cells if c["strategy"] == s]) for name, cells in jaxtl_rows.items()),
        ):
            if cells:
                lines.append(
                    f"| {s} | {code} | {len(cells)} | {spread(c['energy_rmse'] for c in cells)} | "
                    f"{spread(c['forces_rmse'] for c in cells)} | {spread(c['epochs_run'] for c in cells)} "
                    f"| {spread(c['wall_s'] for c in cells)} |"
                )
    meta = {
        "command": "python " + " ".join([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {
            "mace": getattr(mace, "__version__", "?"),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        "jaxtl_commit": _commit(),
    }
    lines += [
        "",
        f"jaxtl {meta['jaxtl_commit']}; mace {meta['versions']['mace']}, torch {meta['versions']['torch']}, "
        f"python {meta['versions']['python']}; {meta['device']}; {meta['date']}",
        "",
        f"Command: `{meta['command']}`",
        "",
    ]
    record = json.dumps({"meta": meta, "mace_torch": rows, "jaxtl": jaxtl_rows}, indent=1)
    # the cells' commands name this checkout's files: relative to it, as the results are read elsewhere
    (out / "results.json").write_text(record.replace(str(HERE.parent) + "/", ""))
    (out / "results.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
