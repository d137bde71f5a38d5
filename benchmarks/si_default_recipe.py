"""`jaxtl train` with no options but the files and --epochs, on mlearn Si: accuracy and wall time.

    python benchmarks/si_default_recipe.py --epochs 100 --out runs/si_e100
    python benchmarks/si_default_recipe.py --out runs/si_e100 --summarise-only

Runs `jaxtl train --train Si_train.extxyz --test Si_test.extxyz --epochs N --out OUT` as a
user would (a subprocess, the `jaxtl` command's own process settings), times it from launch
to exit, and writes benchmarks/results/si_default_recipe.{md,json}: the test set's energy and
force RMSE (25 structures never seen in training; mlearn's own split) against the bars
energy <= 5 meV/atom and forces <= 120 meV/A within 30 minutes, with the load average
during the run. `--summarise-only` rewrites the results from a finished run folder, taking
the wall time this script recorded in OUT/wall.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _data import data_path
from _harness import hardware_line, run_metadata, write_results

BARS = {"energy_rmse_meV_atom": 5.0, "forces_rmse_meV_A": 120.0, "wall_min": 30.0}


def train_command(epochs: int, out: Path) -> list[str]:
    train, test = data_path("mlearn-Si-train"), data_path("mlearn-Si-test")
    jaxtl = shutil.which("jaxtl") or str(Path(sys.executable).with_name("jaxtl"))
    return [jaxtl, "train", "--train", str(train), "--test", str(test), "--epochs", str(epochs), "--out", str(out)]


def run_and_time(command: list[str], out: Path) -> dict:
    """Runs `command`, sampling the load average every 30 s; the wall time from launch to exit."""
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = run_metadata("si_default_recipe.py", None)
    provenance = {"jaxtl_commit": meta["jaxtl_commit"], "date": meta["date"], "run_by": meta["command"]}
    loads, start = [], time.perf_counter()
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(1.0)
            if int(time.perf_counter() - start) % 30 == 0:
                loads.append(os.getloadavg()[0])
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)} failed (exit {proc.returncode}); see {out.parent / out.name}.log")
    record = {"command": command, "wall_s": wall, "load_average_1min": loads, **provenance}
    (out / "wall.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def summarise(out: Path, timing: dict, argv: list[str]) -> None:
    test = json.loads((out / "final_metrics.json").read_text())["test"]["all"]
    loads = timing["load_average_1min"] or [float("nan")]
    row = {
        "epochs": json.loads((out / "train_config.json").read_text()).get("max_num_epochs"),
        "n_test": test["n_graphs"],
        "energy_rmse_meV_atom": test["energy_rmse"],
        "forces_rmse_meV_A": test["forces_rmse"],
        "wall_min": timing["wall_s"] / 60,
        "load_average_min": min(loads),
        "load_average_max": max(loads),
    }
    row["meets_bars"] = all(row[k] <= v for k, v in BARS.items())
    meta = run_metadata("si_default_recipe.py", argv)
    for key in ("malloc_hugetlb", "heap_settings", "glibc_tunables", "cpu_settings"):  # this driver's, not the run's
        meta.pop(key)
    # the run's own commit, date and driver command (a --summarise-only pass only reads its folder)
    meta.update(jaxtl_commit=timing["jaxtl_commit"], date=timing["date"], command=timing["run_by"])
    meta.update(train_command=" ".join(Path(a).name if Path(a).is_absolute() else a for a in timing["command"]))
    meta.update(device=f"CPU ({hardware_line()}), shared with other jobs at the load averages shown")
    write_results(HERE / "results" / "si_default_recipe", meta, [row], markdown)


def markdown(rows: list, meta: dict) -> str:
    r = rows[0]
    verdict = "meets" if r["meets_bars"] else "does not meet"
    return (
        f"# `jaxtl train` defaults on mlearn Si\n\n`{meta['train_command']}`\n\nrun by `{meta['command']}` on "
        f"{meta['device']}.\n\n| epochs | test structures | energy RMSE (meV/atom) | force RMSE (meV/A) | wall (min) "
        "| load average (1 min) |\n|---|---|---|---|---|---|\n"
        f"| {r['epochs']} | {r['n_test']} | {r['energy_rmse_meV_atom']:.2f} | {r['forces_rmse_meV_A']:.1f} "
        f"| {r['wall_min']:.1f} | {r['load_average_min']:.1f}-{r['load_average_max']:.1f} |\n\n"
        f"The run {verdict} the bars energy <= {BARS['energy_rmse_meV_atom']:g} meV/atom, forces <= "
        f"{BARS['forces_rmse_meV_A']:g} meV/A within {BARS['wall_min']:g} minutes (wall time from launch to "
        "exit, compilation included). The test set is mlearn's own Si test file, disjoint from training.\n"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=100, help="--epochs of the `jaxtl train` run (default 100)")
    p.add_argument("--out", type=Path, default=Path("runs/si_default"), help="the run folder")
    p.add_argument("--summarise-only", action="store_true", help="rewrite the results from a finished run")
    args = p.parse_args(argv)
    if args.summarise_only:
        timing = json.loads((args.out / "wall.json").read_text())
    else:
        if args.out.exists():
            raise SystemExit(f"{args.out} exists: a timed run starts from an empty folder")
        timing = run_and_time(train_command(args.epochs, args.out), args.out)
    summarise(args.out, timing, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
