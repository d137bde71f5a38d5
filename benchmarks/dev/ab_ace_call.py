"""A/B of the compiled ACE calculator: the working tree against jaxtl at a git revision, in one process.

Both sides load the same ACE student (`jaxtl.distill.ace_calculator.CompiledACECalculator`
of its model.npz, the default radial table); the 'base' side is jaxtl as at `--base`,
imported as a renamed copy of its `jaxtl/` (benchmarks/dev/ab_large_graph_paths.py's
`import_base`), so both sides share the process, the load and the allocator. Timed in
alternation (the order swapped every round), `--rounds` rounds of one call per side per
structure:

  * `ase`: one energy+forces call through ASE, as `jaxtl.distill.compare_calculators`
    times it (get_potential_energy and get_forces on a fresh copy of the structure with
    a reset calculator, the copy untimed): neighbour list, rows, the compiled call and
    ASE's machinery;
  * `program`: the compiled program alone (with the virial) on arrays already on the device.

Prints each side's median wall and process-CPU microseconds, the ratios working tree /
base, the load average, and the largest force difference between the sides over the
timed structures.

    python benchmarks/dev/ab_ace_call.py --base HEAD~1 \
        --student runs/h2cu/students/ace_o3_d8_r4_hot/student \
        --structures runs/h2cu/students/ace_o3_d8_r4_hot/test.xyz --repeat 1 1 1 --rounds 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/dev/
from ab_large_graph_paths import import_base  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="git revision of the 'base' side, e.g. HEAD~1")
    p.add_argument("--student", required=True, help="ACE student folder (student.json + model.npz)")
    p.add_argument("--structures", required=True, help="extended XYZ; --n-structures evenly spaced ones are timed")
    p.add_argument("--n-structures", type=int, default=4)
    p.add_argument("--repeat", type=int, nargs=3, default=(1, 1, 1), help="repeat each structure (2 2 1: 56 -> 224)")
    p.add_argument("--rounds", type=int, default=40, help="rounds of alternating calls (median reported)")
    return p.parse_args(argv)


class Side:
    """One side: its calculator, warmed on every structure, and the timed calls' seconds."""

    def __init__(self, package, model_file: Path, structures):
        import importlib

        import jax

        module = importlib.import_module(f"{package}.distill.ace_calculator")
        rows = importlib.import_module(f"{package}.distill.ace_rows")
        self.calc = module.CompiledACECalculator(model_file)
        self.forces = [self.ase_call(a) for a in structures]
        self.programs = []
        for a in structures:
            species = self.calc.species_of(a.numbers)
            n_species = len(self.calc.elements)
            layout, arrays = rows.pack_rows(
                a.positions, a.cell.array, a.pbc, species, n_species, self.calc.cutoff, at_least=self.calc._layout
            )
            program, on_device = self.calc.program(layout, arrays), [jax.device_put(x) for x in arrays]
            self.programs.append(lambda p=program, d=on_device: jax.block_until_ready(p(*d)))
        self.wall: dict[str, list[float]] = {"ase": [], "program": []}
        self.cpu: dict[str, list[float]] = {"ase": [], "program": []}

    def ase_call(self, atoms, timed: bool = False):
        a = atoms.copy()
        a.calc = self.calc
        self.calc.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        a.get_potential_energy()
        forces = a.get_forces()
        if timed:
            self.wall["ase"].append(time.perf_counter() - t0)
            self.cpu["ase"].append(time.process_time() - c0)
        return forces

    def time_program(self, i: int) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        self.programs[i]()
        self.wall["program"].append(time.perf_counter() - t0)
        self.cpu["program"].append(time.process_time() - c0)


def main(argv=None) -> int:
    args = parse_args(argv)
    import ase.io
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    frames = ase.io.read(args.structures, ":")
    picked = np.linspace(0, len(frames) - 1, min(len(frames), args.n_structures)).astype(int)
    structures = []
    for i in picked:
        a = frames[i].repeat(tuple(args.repeat))
        a.calc = None
        structures.append(a)
    model_file = Path(args.student) / "model.npz"
    import_base(args.base, Path(tempfile.mkdtemp(prefix="jaxtl_ab_ace_")))  # kept: lazy imports read it later
    sides = {
        args.base: Side("jaxtl_base", model_file, structures),
        "working tree": Side("jaxtl", model_file, structures),
    }
    (base, new) = sides.values()
    diff = max(float(np.abs(f - g).max()) for f, g in zip(base.forces, new.forces, strict=True))
    load_before = os.getloadavg()[0]
    for r in range(args.rounds):
        for i, a in enumerate(structures):
            # the order alternates: a call right after the other side's runs on caches that
            # call warmed, several per cent faster than the first of the pair
            for side in (base, new) if (r + i) % 2 else (new, base):
                side.ase_call(structures[i - 1])  # untimed: this side's caches warm again
                side.ase_call(a, timed=True)
                side.time_program(i)
    n_atoms = len(structures[0])
    print(
        f"[ab-ace] {n_atoms} atoms (first structure), {len(structures)} structures x {args.rounds} rounds, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    for name, side in sides.items():
        cells = ", ".join(
            f"{what} {1e6 * statistics.median(side.wall[what]):7.1f} us (CPU {1e6 * statistics.median(side.cpu[what]):7.1f})"
            for what in ("ase", "program")
        )
        print(f"[ab-ace]   {name:14s} {cells}")
    ratios = ", ".join(
        f"{what} wall {statistics.median(new.wall[what]) / statistics.median(base.wall[what]):.3f} "
        f"CPU {statistics.median(new.cpu[what]) / statistics.median(base.cpu[what]):.3f}"
        for what in ("ase", "program")
    )
    print(f"[ab-ace]   working tree / {args.base}: {ratios}")
    print(f"[ab-ace]   largest |force difference| between the sides: {diff:.1e} eV/A")
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)
    sys.exit(main())
