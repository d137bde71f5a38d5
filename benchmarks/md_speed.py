"""MD steps per second: jaxtl's MD engine against the calculator path (and mace-torch), A/B in one process.

NVE velocity Verlet from one start (the atoms' FixAtoms kept), in this process:

  * `jaxtl + ASE` (the calculator path): `jaxtl.MACECalculator` under ASE's `VelocityVerlet`,
    a neighbour list and a model call from Python every step;
  * `jaxtl MDEngine`: jaxtl's jit-compiled MD (`jaxtl md`: `check_every` steps a compiled
    chunk, the neighbour list rebuilt with a skin only when an atom has moved far enough),
    once per `--skin` value (each with its own engine, so capacities are not shared);
  * `mace-torch + ASE`: mace's `MACECalculator` under the same integrator (unless --no-torch).

Every code is warmed up first (the first model call; for the engine a whole run, which
compiles its chunk), then `--rounds` rounds each time every code once, interleaved (the
order rotates by round), so that all codes see the same background load. The tables give
the median and the range over rounds, the engine's speed-up over the calculator path in
the same round, the load average before and after, and the final positions against the
calculator path's: on one model in float64 the trajectories agree to round-off. They also
give the process's CPU time a step (all threads): on a loaded machine, where the wall
time waits on other processes, the CPU times still compare the work each code does.

Default: the real H2/Cu MACE of the frozen-transfer-learning paper (`../shared/models/
h2cu_mace.model`) on H2 over Cu(111) (56 atoms, 18 fixed), repeated --repeat times in the
surface plane. mace-torch runs with --torch-threads (1: on a shared CPU its OpenMP threads
spin and slow every other code); JAX's CPU client uses the cores XLA picks (all of them).

    python benchmarks/md_speed.py --steps 200 --repeat 2,2,1 --out benchmarks/results/md_speed_cpu
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
CALCULATOR, TORCH = "jaxtl + ASE", "mace-torch + ASE"


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
    p.add_argument("--rounds", type=int, default=3, help="timed runs of every code, interleaved")
    p.add_argument("--check-every", type=int, default=None, help="steps per compiled chunk (default MDConfig's)")
    p.add_argument(
        "--skin",
        default="auto",
        help="the engine's neighbour-list skins in A, comma-separated, one engine each; 'auto': the engine's "
        "own choice (MDConfig's default)",
    )
    p.add_argument("--torch-threads", type=int, default=1, help="mace-torch's threads")
    p.add_argument("--no-torch", action="store_true", help="leave mace-torch out")
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


class AseRun:
    """`steps` VelocityVerlet steps with an ASE calculator: () -> (seconds, CPU seconds, final positions, info)."""

    def __init__(self, calc, atoms, steps: int, dt: float):
        self.calc, self.atoms, self.steps, self.dt = calc, atoms, steps, dt
        warm = atoms.copy()
        warm.calc = calc
        warm.get_forces()  # the first call (jaxtl: the compile)

    def __call__(self):
        from ase import units
        from ase.md.verlet import VelocityVerlet

        atoms = self.atoms.copy()
        atoms.calc = self.calc
        dyn = VelocityVerlet(atoms, timestep=self.dt * units.fs)
        t0, c0 = time.perf_counter(), time.process_time()
        dyn.run(self.steps)
        return time.perf_counter() - t0, time.process_time() - c0, atoms.get_positions(), {}


class EngineRun:
    """An `MDEngine` run of `steps` NVE steps: () -> (seconds, CPU seconds, final positions, info
    with the skin, rebuilds and compilations). Built with a warm-up run, which compiles its chunks."""

    def __init__(self, engine, atoms, steps: int, dt: float, check_every: int | None, skin: float | None):
        from jaxtl.md.simulate import MDConfig

        settings = {"check_every": check_every, "skin": skin}
        self.engine, self.atoms = engine, atoms
        self.config = MDConfig(
            steps=steps,
            dt=dt,
            ensemble="nve",
            temperature=None,
            save_every=steps,
            **{k: v for k, v in settings.items() if v is not None},
        )
        engine.run(atoms, self.config)

    def __call__(self):
        before = self.engine.n_compilations
        t0, c0 = time.perf_counter(), time.process_time()
        result = self.engine.run(self.atoms, self.config)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if result.error:
            raise SystemExit(f"jaxtl MD failed: {result.error}")
        info = {
            "skin_A": result.skin,
            "check_every": self.config.check_every,
            "rebuilds": result.n_rebuilds,
            "overflows": result.n_overflows,
            "compilations": self.engine.n_compilations - before,
        }
        return wall, cpu, result.frames[-1].get_positions(), info


def interleave(runs: dict, rounds: int, steps: int) -> dict:
    """{name: [(seconds, CPU seconds, positions, info) per round]}; round r starts at the r-th code."""
    names = list(runs)
    out = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(runs[name]())
            wall, cpu = out[name][-1][:2]
            print(
                f"[md] round {r + 1} {name:30s} {1e3 * wall / steps:8.2f} ms/step ({1e3 * cpu / steps:.2f} CPU)",
                flush=True,
            )
    return out


def summarise(results: dict, steps: int) -> list[dict]:
    """A row per code: ms/step (wall and CPU) median and range over rounds, speed-up over the
    calculator path (per round, the same round's calculator time over this code's), final
    positions against the calculator path's (first round) and mace-torch's."""
    import numpy as np

    calc = results[CALCULATOR]
    rows = []
    for name, runs in results.items():
        ms = [1e3 * wall / steps for wall, _, _, _ in runs]
        cpu_ms = [1e3 * cpu / steps for _, cpu, _, _ in runs]
        speedup = [c[0] / run[0] for c, run in zip(calc, runs)]
        cpu_speedup = [c[1] / run[1] for c, run in zip(calc, runs)]
        row = {
            "code": name,
            "ms_per_step": ms,
            "ms_per_step_median": statistics.median(ms),
            "steps_per_s_median": 1e3 / statistics.median(ms),
            "speedup_vs_calculator": speedup,
            "speedup_vs_calculator_median": statistics.median(speedup),
            "cpu_ms_per_step": cpu_ms,
            "cpu_ms_per_step_median": statistics.median(cpu_ms),
            "cpu_speedup_vs_calculator_median": statistics.median(cpu_speedup),
            "max_position_diff_vs_calculator_A": float(np.abs(runs[0][2] - calc[0][2]).max()),
        }
        if TORCH in results:
            row["max_position_diff_vs_torch_A"] = float(np.abs(runs[0][2] - results[TORCH][0][2]).max())
        row.update(runs[-1][3])
        rows.append(row)
    return rows


def markdown(rows, meta) -> str:
    engines = [r for r in rows if "skin_A" in r]
    engine_text = "; ".join(
        f"{r['code']}: skin {r['skin_A']:.3f} A, {r['check_every']} steps a chunk, {r['rebuilds']} rebuilds, "
        f"{r['overflows']} capacity overflows and {r['compilations']} compilations in the last timed run"
        for r in engines
    )
    lines = [
        f"# MD steps per second: jaxtl MD engine vs calculator path ({meta['n_atoms']} atoms, cpu)",
        "",
        f"{meta['model']} on {meta['structure']} repeated {meta['repeat']} ({meta['n_atoms']} atoms, "
        f"{meta['n_fixed']} fixed), {meta['dtype']}, NVE velocity Verlet, {meta['steps']} steps of {meta['dt_fs']} fs "
        f"from Maxwell-Boltzmann velocities at {meta['temperature_K']} K; one process ({meta['machine']}; JAX on "
        f"all cores, mace-torch {meta['torch_threads']} thread(s)); {meta['rounds']} rounds, each code once a "
        f"round, interleaved. {engine_text}. Load average (1 min) {meta['load_before']:.2f} before, "
        f"{meta['load_after']:.2f} after.",
        "",
        "| code | ms/step, median (range) | steps/s | speed-up vs calculator path, median (range) "
        "| CPU ms/step (all threads), median | CPU speed-up vs calculator path | final positions vs calculator path, A |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['code']} | {r['ms_per_step_median']:.2f} ({min(r['ms_per_step']):.2f}-{max(r['ms_per_step']):.2f}) "
        f"| {r['steps_per_s_median']:.1f} | {r['speedup_vs_calculator_median']:.2f}x "
        f"({min(r['speedup_vs_calculator']):.2f}-{max(r['speedup_vs_calculator']):.2f}) "
        f"| {r['cpu_ms_per_step_median']:.2f} | {r['cpu_speedup_vs_calculator_median']:.2f}x "
        f"| {r['max_position_diff_vs_calculator_A']:.1e} |"
        for r in rows
    ]
    return "\n".join(lines + ["", f"Command: `{meta['command']}`", ""])


def main(argv=None) -> int:
    args = parse_args(argv)
    from _data import data_path

    args.model = args.model or str(data_path("h2cu-mace"))
    args.structure = args.structure or str(data_path("h2cu-slabs") / "cu111_h7.0_full_925K.in")
    import mace  # noqa: F401  (before e3nn, see the README)
    import torch
    from _harness import run_metadata, write_results
    from mace.calculators import MACECalculator as TorchCalculator

    import jaxtl

    jaxtl.configure_cpu()  # the settings the `jaxtl` command runs with (before JAX starts)
    from jaxtl.convert.convert import from_torch_module
    from jaxtl.convert.torch_reader import load_torch_model
    from jaxtl.md.simulate import MDEngine

    torch.set_num_threads(args.torch_threads)
    atoms = start_structure(args.structure, args.repeat, args.temperature)
    loaded = jaxtl.api.build_loaded_model(*from_torch_module(load_torch_model(args.model)), dtype=args.dtype)
    runs = {CALCULATOR: AseRun(jaxtl.MACECalculator(loaded), atoms, args.steps, args.dt)}
    for skin in args.skin.split(","):
        value = None if skin == "auto" else float(skin)
        name = "jaxtl MDEngine" + (" (auto skin)" if value is None else f" (skin {value:g} A)")
        runs[name] = EngineRun(MDEngine(loaded), atoms, args.steps, args.dt, args.check_every, value)
    if not args.no_torch:
        torch_calc = TorchCalculator(model_paths=args.model, device="cpu", default_dtype=args.dtype)
        runs[TORCH] = AseRun(torch_calc, atoms, args.steps, args.dt)
    load_before = os.getloadavg()[0]
    rows = summarise(interleave(runs, args.rounds, args.steps), args.steps)
    load_after = os.getloadavg()[0]
    for r in rows:
        print(
            f"[md] {r['code']:30s} {r['ms_per_step_median']:8.2f} ms/step  x{r['speedup_vs_calculator_median']:5.2f} "
            f"vs calculator (CPU x{r['cpu_speedup_vs_calculator_median']:5.2f})  final positions vs calculator "
            f"{r['max_position_diff_vs_calculator_A']:.1e} A"
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
        "rounds": args.rounds,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load_after,
    }
    write_results(args.out or ROOT / "benchmarks" / "results" / "md_speed_cpu", meta, rows, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
