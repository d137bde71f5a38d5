"""Teacher and students side by side: energy+forces time per call, and force error against the teacher.

Any student folder works, MACE or ACE (`jaxtl.load_calculator`). All models are timed
in one process through their ASE calculators (neighbour lists included), calls
interleaved structure by structure (`jaxtl.distill.compare_calculators`), so the
ratios hold on a shared machine; --repeat 2 2 1 times the structures repeated (e.g.
56 -> 224 atoms). Errors are against the teacher's labels (REF_energy, REF_forces) in
the given extended XYZ file, e.g. a distillation run's test.xyz.

    python benchmarks/student_speed.py --teacher runs/h2cu/teacher \
        --students runs/h2cu/students/ace_o3_d8_r5/student runs/h2cu/students/mace_F2_r4/student \
        --structures runs/h2cu/students/ace_o3_d8_r5/test.xyz --out benchmarks/results/h2cu_students_speed

Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _harness as harness  # noqa: E402

from jaxtl.provenance import jaxtl_commit  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher model folder")
    p.add_argument("--students", nargs="+", required=True, help="student folders (MACE or ACE) or model folders")
    p.add_argument("--structures", required=True, help="teacher-labelled extended XYZ (held-out structures)")
    p.add_argument("--speed-structures", type=int, default=4, help="structures timed, evenly spaced (default 4)")
    p.add_argument("--repeat", type=int, nargs=3, default=(1, 1, 1), help="repeat the timed cells (default 1 1 1)")
    p.add_argument("--repeats", type=int, default=20, help="rounds of interleaved calls (default 20)")
    p.add_argument("--out", required=True, help="output stem")
    args = p.parse_args(argv)

    import ase.io

    from jaxtl.calculator import MACECalculator
    from jaxtl.distill import compare_calculators
    from jaxtl.distill.students import calculator_errors, load_calculator

    frames = ase.io.read(args.structures, ":")
    picked = [frames[i] for i in np.linspace(0, len(frames) - 1, min(len(frames), args.speed_structures)).astype(int)]
    timed = []
    for a in picked:
        b = a.repeat(tuple(args.repeat))
        b.calc = None
        timed.append(b)
    calcs = {"teacher": MACECalculator(args.teacher)}
    for path in args.students:
        calcs[harness.relative_paths(str(path))] = load_calculator(path)
    load_before = os.getloadavg()
    speed = compare_calculators(calcs, timed, repeats=args.repeats)
    load_after = os.getloadavg()
    rows = []
    for name, calc in calcs.items():
        errors = calculator_errors(calc, frames) if name != "teacher" else None
        rows.append(
            {
                "model": name,
                "ms_per_call": speed[name]["ms_per_call"],
                "model_ms_per_call": speed[name].get("model_ms_per_call"),
                "speedup": speed["teacher"]["ms_per_call"] / speed[name]["ms_per_call"],
                "forces_rmse_meV_per_A": None if errors is None else errors["forces_rmse"],
                "energy_rmse_meV_per_atom": None if errors is None else errors["energy_rmse"],
            }
        )
    meta = {
        "structures": harness.relative_paths(args.structures),
        "n_structures": len(frames),
        "n_atoms_mean": speed["n_atoms_mean"],
        "device": f"{speed['device']} ({harness.hardware_line()})",
        "repeats": args.repeats,
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "commit": jaxtl_commit(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": harness.library_versions(),
        "command": "python benchmarks/student_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Energy+forces per ASE calculator call on {meta['device']}, {meta['n_atoms_mean']:.0f} atoms, median of "
        f"{args.repeats} interleaved rounds over {len(timed)} structures; errors against the teacher "
        f"on {len(frames)} held-out structures ({meta['structures']}). Load average (1, 5, 15 min) before/after "
        f"the timing: {', '.join(f'{x:.1f}' for x in load_before)} / {', '.join(f'{x:.1f}' for x in load_after)}.",
        "",
        "| model | ms/call | speed-up | F RMSE vs teacher (meV/A) | E RMSE vs teacher (meV/atom) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        f = "" if r["forces_rmse_meV_per_A"] is None else f"{r['forces_rmse_meV_per_A']:.1f}"
        e = "" if r["energy_rmse_meV_per_atom"] is None else f"{r['energy_rmse_meV_per_atom']:.2f}"
        lines.append(f"| {r['model']} | {r['ms_per_call']:.2f} | {r['speedup']:.1f}x | {f} | {e} |")
    lines += [
        "",
        f"jaxtl {meta['commit']}, {meta['date']}, versions {meta['versions']}. Command: `{meta['command']}`",
        "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
