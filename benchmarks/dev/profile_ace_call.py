"""Where one ACE student's energy+forces call through ASE spends its time, next to the teacher's.

For each structure size (a teacher-labelled structure and its repeats), interleaved calls of:
  * the teacher (`jaxtl.load_calculator`, MACECalculator) through ASE;
  * each ACE student through ASE (`jaxtl.load_calculator`), its `last_timing` split into
    the host neighbour rows (`nlist_s`) and the compiled call with its transfers (`model_s`);
  * the student's compiled energy+forces alone, on arrays already on the device (no host
    work, no transfers): what the model costs;
  * `pack_rows` alone (vesin neighbour list and the rows).
Medians in ms of `--repeats` rounds, and the load average before and after.

    nice -n 10 python benchmarks/dev/profile_ace_call.py --teacher runs/h2cu/teacher \
        --students runs/h2cu/students/ace_o3_d8_r4/student --structures runs/h2cu/data/labelled.xyz
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import _harness as harness  # noqa: E402


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def profile(teacher: str, students: list[str], atoms, repeats: int, radial_table: int | None) -> dict:
    """Median ms per part for one structure (see the module docstring)."""
    import jax

    from jaxtl import load_calculator
    from jaxtl.distill.ace_rows import pack_rows

    calcs = {"teacher": load_calculator(teacher)}
    for s in students:
        calcs[s] = load_calculator(s, radial_table=radial_table)

    def ase_call(calc):
        a = atoms.copy()
        a.calc = calc
        a.get_potential_energy()
        a.get_forces()

    times: dict[str, list[float]] = {}
    for calc in calcs.values():
        ase_call(calc)  # compile
    for _ in range(repeats):
        for name, calc in calcs.items():
            calc.reset()
            times.setdefault(f"{name} ase", []).append(_timed(lambda: ase_call(calc)))
            timing = getattr(calc, "last_timing", None)
            if timing:
                for key, value in timing.items():
                    times.setdefault(f"{name} {key}", []).append(value)
            if name == "teacher":
                continue
            species = calc.species_of(atoms.numbers)
            args = (atoms.positions, atoms.cell.array, atoms.pbc, species, len(calc.elements), calc.cutoff)
            times.setdefault(f"{name} pack_rows", []).append(_timed(lambda: pack_rows(*args, at_least=calc._layout)))
            layout, arrays = pack_rows(*args, at_least=calc._layout)
            program, on_device = calc.program(layout, arrays), [jax.device_put(b) for b in arrays]
            jax.block_until_ready(program(*on_device))
            times.setdefault(f"{name} compiled on device", []).append(
                _timed(lambda: jax.block_until_ready(program(*on_device)))
            )
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True)
    p.add_argument("--students", nargs="+", required=True)
    p.add_argument("--structures", required=True, help="extended XYZ; the first test structure is used")
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 2], help="lateral repeats (1: 56 atoms, 2: 224)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--radial-table", type=int, default=None)
    p.add_argument("--out", type=Path, help="write OUT.json")
    args = p.parse_args(argv)
    import ase.io

    frames = [a for a in ase.io.read(args.structures, ":") if a.info.get("split") != "train"]
    results = {}
    for n in args.sizes:
        atoms = frames[0].repeat((n, n, 1))
        atoms.calc = None
        before = os.getloadavg()
        row = profile(args.teacher, args.students, atoms, args.repeats, args.radial_table)
        row["load_average"] = {"before": before, "after": os.getloadavg()}
        results[len(atoms)] = row
        print(len(atoms), "atoms:", json.dumps(row, indent=1))
    if args.out:
        meta = harness.run_metadata("dev/profile_ace_call.py", argv)
        args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
