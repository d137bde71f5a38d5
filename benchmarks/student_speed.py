"""Teacher and students side by side: energy+forces time per call, and force error against the teacher.

All models are timed in one process, calls interleaved structure by structure
(`jaxtl.distill.speed.compare_speed`), so the ratios hold on a shared machine; the
errors are against the teacher's labels in the given extended XYZ file (a distillation
run's test.xyz). Use it to put students of different runs on one trade-off table.

    python benchmarks/student_speed.py --teacher runs/distill_h2cu/teacher \
        --students runs/d3_A2/A2/student/model runs/distill_h2cu/M/student/model \
        --structures runs/d3_A2/A2/test.xyz --out benchmarks/results/h2cu_students

Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher model folder")
    p.add_argument("--students", nargs="+", required=True, help="student model folders")
    p.add_argument("--structures", required=True, help="teacher-labelled extended XYZ (held-out structures)")
    p.add_argument("--speed-structures", type=int, default=4, help="structures timed (default 4)")
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--out", required=True, help="output stem")
    args = p.parse_args(argv)

    import ase.io

    from jaxtl.api import load_model
    from jaxtl.distill.speed import compare_speed, n_parameters
    from jaxtl.evaluate import evaluate_configs
    from jaxtl.graph.io import read_configurations

    frames = ase.io.read(args.structures, ":")
    configs = read_configurations(args.structures)
    teacher = load_model(args.teacher)
    models = {"teacher": teacher}
    for path in args.students:
        models[str(path)] = load_model(path)
    speed = compare_speed(models, frames[: args.speed_structures], repeats=args.repeats)
    rows = []
    for name, model in models.items():
        errors = evaluate_configs(model, configs)["all"] if name != "teacher" else None
        rows.append({"model": name, "n_parameters": n_parameters(model),
                     "ms_per_call": speed[name]["ms_per_call"],
                     "speedup": speed["teacher"]["ms_per_call"] / speed[name]["ms_per_call"],
                     "forces_rmse_meV_per_A": None if errors is None else errors["forces_rmse"],
                     "energy_rmse_meV_per_atom": None if errors is None else errors["energy_rmse"]})
    meta = {"structures": args.structures, "n_structures": len(frames), "n_atoms_mean": speed["n_atoms_mean"],
            "device": speed["device"], "repeats": args.repeats, "command": "python benchmarks/student_speed.py "
            + " ".join(sys.argv[1:] if argv is None else argv)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [f"Energy+forces per call on {meta['device']}, {meta['n_atoms_mean']:.0f} atoms, median of "
             f"{args.repeats} interleaved rounds over {args.speed_structures} structures; errors against the teacher "
             f"on {len(frames)} held-out structures ({args.structures}).", "",
             "| model | params | ms/call | speed-up | F RMSE vs teacher (meV/A) | E RMSE vs teacher (meV/atom) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = "" if r["forces_rmse_meV_per_A"] is None else f"{r['forces_rmse_meV_per_A']:.1f}"
        e = "" if r["energy_rmse_meV_per_atom"] is None else f"{r['energy_rmse_meV_per_atom']:.2f}"
        lines.append(f"| {r['model']} | {r['n_parameters']} | {r['ms_per_call']:.2f} | {r['speedup']:.1f}x | {f} | {e} |")
    lines += ["", f"Command: `{meta['command']}`", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from jaxtl._allocator import restart_with_hugepages

    restart_with_hugepages()  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
