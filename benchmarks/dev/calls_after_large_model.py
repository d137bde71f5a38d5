"""How long a small model's calls stay slow after a large model's call in the same process.

Why `benchmarks/distill_h2cu.py` once gave the H2/Cu teacher 13 ms per call where
`benchmarks/student_speed.py` gave 5.4 ms: its speed stage interleaved an
MP-0-medium-shaped MACE (0.2-0.3 s a call) with the teacher and the students, and the
teacher came right after it. Here, one process: each round calls the large model once,
optionally sleeps, then calls the teacher K times in a row (each through its ASE
calculator, a fresh copy, a reset calculator), and the same again for a student; the
table gives the median time of the k-th call after the large one. The same for the
teacher's and the student's calls after one call of the other. Then the figures of
`compare_calculators` for {teacher, student} with and without the large model interleaved.

    nice -n 10 python benchmarks/dev/calls_after_large_model.py --run runs/h2cu \
        --student runs/h2cu/students/ace_o3_d8_r4_hot/student --out benchmarks/results/dev_calls_after_large_model
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import _harness as harness  # noqa: E402


def _call(calc, atoms) -> float:
    a = atoms.copy()
    a.calc = calc
    calc.reset()
    t0 = time.perf_counter()
    a.get_potential_energy()
    a.get_forces()
    return time.perf_counter() - t0


def calls_after(large, small, structures, rounds: int, k: int, pause_s: float) -> np.ndarray:
    """[k] median seconds of the small model's k-th call after one call of the large one."""
    times = np.zeros((rounds, k))
    for r in range(rounds):
        _call(large, structures[r % len(structures)])
        time.sleep(pause_s)
        for j in range(k):
            times[r, j] = _call(small, structures[j % len(structures)])
    return np.median(times, axis=0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a distill_h2cu.py run folder (teacher/, data/)")
    p.add_argument("--student", required=True, help="a student folder")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--calls", type=int, default=8, help="calls of the small model after each large one")
    p.add_argument("--out", type=Path, required=True, help="output stem")
    args = p.parse_args(argv)
    import ase.io
    import distill_h2cu

    from jaxtl.calculator import MACECalculator
    from jaxtl.distill import compare_calculators
    from jaxtl.distill.students import load_calculator

    test = [a for a in ase.io.read(args.run / "data" / "labelled.xyz", ":") if a.info.get("split") != "train"]
    structures = [test[i].copy() for i in np.linspace(0, len(test) - 1, 4).astype(int)]
    for a in structures:
        a.calc = None
    calcs = {"teacher": load_calculator(args.run / "teacher"), "student": load_calculator(args.student)}
    large = MACECalculator(distill_h2cu.medium_shaped_model())
    for calc in [*calcs.values(), large]:
        for a in structures:
            _call(calc, a)  # compile
    rows = []
    load_before = os.getloadavg()
    for pause in (0.0, 0.5):
        for name, calc in calcs.items():
            ms = 1e3 * calls_after(large, calc, structures, args.rounds, args.calls, pause)
            rows.append({"what": f"{name}, k-th call after the medium model, pause {pause} s", "ms": ms.tolist()})
    for first, then in (("teacher", "student"), ("student", "teacher")):  # the two small models, one after the other
        ms = 1e3 * calls_after(calcs[first], calcs[then], structures, args.rounds, 2, 0.0)
        rows.append({"what": f"{then}, 1st and 2nd call after the {first}", "ms": ms.tolist()})
    for label, group in (("without", calcs), ("with", {**calcs, "mp0_medium_shaped": large})):
        timing = compare_calculators(group, structures, repeats=args.rounds)
        ms = [timing[n]["ms_per_call"] for n in calcs]
        rows.append({"what": f"compare_calculators {label} the medium model interleaved: teacher, student", "ms": ms})
    meta = harness.run_metadata("dev/calls_after_large_model.py", argv)
    meta["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    meta["device"] = f"{timing['device']} ({harness.hardware_line()})"

    def markdown(rows, meta):
        load = meta["load_average"]
        lines = [
            f"Median ms per energy+forces ASE call on {meta['device']}, 56-atom H2/Cu structures, "
            f"{args.rounds} rounds. Load average "
            f"(1, 5, 15 min) before/after: {', '.join(f'{x:.1f}' for x in load['before'])} / "
            f"{', '.join(f'{x:.1f}' for x in load['after'])}.",
            "",
            "| what | ms |",
            "|---|---|",
        ]
        lines += [f"| {r['what']} | {', '.join(f'{x:.2f}' for x in r['ms'])} |" for r in rows]
        return "\n".join(lines) + f"\n\nCommand: `{meta['command']}`\n"

    harness.write_results(args.out, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)
    sys.exit(main())
