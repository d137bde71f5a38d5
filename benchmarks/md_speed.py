"""MD steps per second: jaxtl against mace-torch on the same model file and start.

NVE velocity Verlet from one start (the atoms' FixAtoms kept), three ways, in this process:

  * `mace-torch + ASE`: mace's `MACECalculator` under ASE's `VelocityVerlet` (how MD with
    mace-torch is usually run: a neighbour list and a model call from Python every step);
  * `jaxtl + ASE`: `jaxtl.MACECalculator` under the same integrator (the same Python loop);
  * `jaxtl MDEngine`: jaxtl's jit-compiled MD (`jaxtl md`: `check_every` steps a compiled
    chunk, the neighbour list rebuilt with a skin only when an atom has moved far enough).

Each run is timed after a warm-up (the first model call; for the engine a first run of the
same length, which compiles its chunk), and the three final positions are compared: on the
same model in float64 the trajectories agree until chaos amplifies round-off.

Default: the real H2/Cu MACE of the frozen-transfer-learning paper (`../shared/models/
h2cu_mace.model`) on H2 over Cu(111) (56 atoms, 18 fixed) at 925 K, repeated --repeat times
in the surface plane.

    python benchmarks/md_speed.py --steps 200 --repeat 2,2,1 --out benchmarks/results/md_speed_cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a mace-torch model file (default: jaxtl.datasets' h2cu-mace)")
    p.add_argument(
        "--structure",
        default=None,
        help="a structure file (default: cu111_h7.0_full_925K.in of jaxtl.datasets' h2cu-slabs)",
    )
    p.add_argument("--repeat", default="1,1,1", help="repeat the cell (e.g. 2,2,1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--dt", type=float, default=0.5, help="fs")
    p.add_argument("--temperature", type=float, default=300.0, help="K, initial Maxwell-Boltzmann velocities")
    p.add_argument("--check-every", type=int, default=20, help="steps per compiled chunk of the engine")
    p.add_argument("--skin", type=float, default=None, help="the engine's neighbour-list skin, A (default MDConfig's)")
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/md_speed_<device>)")
    return p.parse_args(argv)


def start_structure(path: str, repeat: str, temperature: float):
    """The structure, repeated, with Maxwell-Boltzmann velocities (seed 0; fixed atoms at rest)."""
    import ase.io
    import numpy as np

    from jaxtl.md.simulate import fixed_atoms, initial_velocities

    atoms = ase.io.read(path, format="aims" if path.endswith(".in") else None)
    atoms = atoms.repeat(tuple(int(r) for r in repeat.split(",")))
    atoms.set_velocities(initial_velocities(atoms, temperature, fixed_atoms(atoms), np.random.default_rng(0)))
    return atoms


def ase_run(calc, atoms, steps: int, dt: float):
    """(seconds for `steps` VelocityVerlet steps after one warm-up call, final positions)."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    atoms.get_forces()  # the warm-up call (jaxtl: the compile)
    dyn = VelocityVerlet(atoms, timestep=dt * units.fs)
    t0 = time.perf_counter()
    dyn.run(steps)
    return time.perf_counter() - t0, atoms.get_positions()


def engine_run(engine, atoms, steps: int, dt: float, check_every: int, skin: float | None):
    """(seconds of an engine run of `steps` after a warm-up run of the same length, final
    positions, rebuilds, compilations)."""
    from jaxtl.md.simulate import MDConfig

    config = MDConfig(
        steps=steps,
        dt=dt,
        ensemble="nve",
        temperature=None,
        check_every=check_every,
        save_every=steps,
        **({} if skin is None else {"skin": skin}),
    )
    engine.run(atoms, config)  # compiles the chunk
    before = engine.n_compilations
    t0 = time.perf_counter()
    result = engine.run(atoms, config)
    wall = time.perf_counter() - t0
    if result.error:
        raise SystemExit(f"jaxtl MD failed: {result.error}")
    return wall, result.frames[-1].get_positions(), result.n_rebuilds, engine.n_compilations - before


def markdown(rows, meta) -> str:
    lines = [
        "# MD steps per second, jaxtl vs mace-torch (cpu)",
        "",
        f"{meta['model']} on {meta['structure']} repeated {meta['repeat']} ({meta['n_atoms']} atoms, "
        f"{meta['n_fixed']} fixed), {meta['dtype']}, NVE velocity Verlet, {meta['steps']} steps of {meta['dt_fs']} fs "
        f"from Maxwell-Boltzmann velocities at {meta['temperature_K']} K; all in one process ({meta['machine']}, "
        f"torch threads {meta['torch_threads']}); the engine (skin {meta['skin_A']} A, {meta['check_every']} steps a "
        f"chunk) rebuilt its neighbour list {meta['engine_rebuilds']} "
        f"times and compiled {meta['engine_compilations_timed_run']} times in the timed run; {meta['date']}.",
        "",
        "| code | ms/step | steps/s | speed-up vs mace-torch | final positions vs mace-torch, A |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['code']} | {r['ms_per_step']:.2f} | {r['steps_per_s']:.1f} | {r['speedup_vs_torch']:.2f}x | "
        f"{r['max_position_diff_vs_torch_A']:.1e} |"
        for r in rows
    ]
    return "\n".join(lines + ["", f"Command: `{meta['command']}`", ""])


def main(argv=None) -> int:
    args = parse_args(argv)
    from _data import data_path

    args.model = args.model or str(data_path("h2cu-mace"))
    args.structure = args.structure or str(data_path("h2cu-slabs") / "cu111_h7.0_full_925K.in")
    import mace  # noqa: F401  (before e3nn, see the README)
    import numpy as np
    import torch
    from _harness import run_metadata, write_results
    from mace.calculators import MACECalculator as TorchCalculator

    import jaxtl

    jaxtl.configure_cpu()  # the settings the `jaxtl` command runs with (before JAX starts)
    from jaxtl.convert.convert import from_torch_module
    from jaxtl.convert.torch_reader import load_torch_model
    from jaxtl.md.simulate import MDConfig, MDEngine

    torch.set_num_threads(os.cpu_count())
    atoms = start_structure(args.structure, args.repeat, args.temperature)
    torch_calc = TorchCalculator(model_paths=args.model, device="cpu", default_dtype=args.dtype)
    loaded = jaxtl.api.build_loaded_model(*from_torch_module(load_torch_model(args.model)), dtype=args.dtype)
    jax_calc = jaxtl.MACECalculator(loaded)
    engine = MDEngine(loaded)

    runs = {}
    runs["mace-torch + ASE"] = ase_run(torch_calc, atoms, args.steps, args.dt)
    runs["jaxtl + ASE"] = ase_run(jax_calc, atoms, args.steps, args.dt)
    wall, positions, rebuilds, compiles = engine_run(engine, atoms, args.steps, args.dt, args.check_every, args.skin)
    runs["jaxtl MDEngine"] = (wall, positions)

    reference = runs["mace-torch + ASE"]
    rows = []
    for name, (wall, positions) in runs.items():
        rows.append(
            {
                "code": name,
                "wall_s": wall,
                "steps_per_s": args.steps / wall,
                "ms_per_step": 1e3 * wall / args.steps,
                "speedup_vs_torch": reference[0] / wall,
                "max_position_diff_vs_torch_A": float(np.abs(positions - reference[1]).max()),
            }
        )
        print(
            f"[md] {name:18s} {rows[-1]['ms_per_step']:8.2f} ms/step {rows[-1]['steps_per_s']:8.1f} steps/s "
            f"x{rows[-1]['speedup_vs_torch']:6.2f}  final positions vs mace-torch "
            f"{rows[-1]['max_position_diff_vs_torch_A']:.1e} A"
        )
    meta = run_metadata("md_speed.py", argv) | {
        "model": Path(args.model).name,
        "structure": Path(args.structure).name,
        "repeat": args.repeat,
        "n_atoms": len(atoms),
        "n_fixed": int(sum(len(c.get_indices()) for c in atoms.constraints)),
        "dtype": args.dtype,
        "steps": args.steps,
        "dt_fs": args.dt,
        "temperature_K": args.temperature,
        "check_every": args.check_every,
        "skin_A": args.skin if args.skin is not None else MDConfig.skin,
        "engine_rebuilds": rebuilds,
        "engine_compilations_timed_run": compiles,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
    }
    write_results(args.out or ROOT / "benchmarks" / "results" / "md_speed_cpu", meta, rows, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
