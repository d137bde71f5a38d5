"""A `jaxtl distill` run folder's report.json as a results file: the student's errors against
the teacher on each independent test set and against DFT beside the teacher's own, the speed
ratio, the basis or parameter count and the fit's cost.

    python benchmarks/distill_report.py runs/aspirin_student/ace_o3_d7 \\
        --results benchmarks/results/aspirin_student_ace --run-command "benchmarks/distill_aspirin.sh ..."

The run's own command and commit are taken from report.json's "provenance" when the run
recorded one; otherwise give them (`--run-command`, `--run-commit`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rows_of(report: dict) -> list[dict]:
    """One row per comparison: the student against the teacher on each test set (and all of
    them), then student and teacher against DFT where the run had DFT labels."""
    rows = [
        {"compared": "student vs teacher", "set": name, **e} for name, e in report["student_vs_teacher_by_set"].items()
    ]
    rows.append({"compared": "student vs teacher", "set": "all test sets", **report["student_vs_teacher"]})
    for who in ("student", "teacher"):
        if f"{who}_vs_dft" in report:
            rows.append({"compared": f"{who} vs DFT", "set": "dft_test_file", **report[f"{who}_vs_dft"]})
    return rows


def markdown(rows: list, meta: dict) -> str:
    r = meta["report"]
    cfg = r["config"]["student"]
    speed = r["speed"]
    student = (
        f"linear ACE, order {cfg['order']}, degree {cfg['degree']}, r_max {cfg['r_max']} A"
        if r["student_kind"] == "ace"
        else f"MACE {cfg.get('model', {})}"
    )
    lines = [
        f"# Distilled student: {student}\n",
        f"Teacher `{meta['teacher']}` ({r['n_parameters']['teacher']:,} parameters); student "
        f"{r['n_parameters']['student']:,} {'basis functions' if r['student_kind'] == 'ace' else 'parameters'}. "
        f"Structures: {r['n_structures']}. Test sets: {r['test_split']}.\n",
        "| compared | set | structures | energy RMSE (meV/atom) | forces RMSE (meV/A) | forces MAE (meV/A) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['compared']} | {row['set']} | {row['n_graphs']} | {row['energy_rmse']:.2f} | "
            f"{row['forces_rmse']:.1f} | {row['forces_mae']:.1f} |"
        )
    if "student_vs_dft" in r and "teacher_vs_dft" in r:
        ratio = r["student_vs_dft"]["forces_rmse"] / r["teacher_vs_dft"]["forces_rmse"]
        lines.append(f"\nStudent / teacher force RMSE against DFT: {ratio:.2f}.")
    lines.append(
        f"\nSpeed, energy+forces {speed['through']}, {speed['n_structures']} structures of "
        f"{speed['n_atoms_mean']:.0f} atoms on {speed['device']}: teacher {speed['teacher']['ms_per_call']:.2f} ms, "
        f"student {speed['student']['ms_per_call']:.2f} ms a call: {speed['speedup']:.2f}x (timed inside the run, "
        "on a machine shared with other jobs)."
    )
    for name, u in (r.get("uncertainty") or {}).items():
        if "forces_predictive_std_median" not in u:  # a student fitted before 81e78f6: the posterior's alone
            lines.append(
                f"- posterior uncertainty on {name}: median force std {u['forces_std_median']:.1f} meV/A against "
                f"an RMSE of {u['forces_rmse']:.1f}; {100 * u['forces_within_1std']:.0f} % of force errors within 1 std"
            )
            continue
        lines.append(
            f"- uncertainty on {name}: force RMSE {u['forces_rmse']:.1f} meV/A; median predictive std "
            f"{u['forces_predictive_std_median']:.1f} ({100 * u['forces_predictive_within_1std']:.0f} % of force "
            f"errors within 1 std): the posterior's {u['forces_posterior_std_median']:.1f} "
            f"({100 * u['forces_posterior_within_1std']:.0f} %) with the fitted noise {u['forces_noise']:.1f}"
        )
    training = r.get("training", {})
    if "timings" in training:
        lines.append(f"- fit: {training['wall_s']:.0f} s wall ({json.dumps(training['timings'])})")
    lines += [
        "",
        f"Run: `{meta['run_command']}` at jaxtl {meta['run_commit']}.",
        f"This file: `{meta['command']}`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a jaxtl distill output folder (report.json)")
    p.add_argument("--results", type=Path, required=True, help="write STEM.json and STEM.md")
    p.add_argument(
        "--run-command",
        help="the command that made the run: needed when report.json has no provenance, and given, it "
        "replaces the recorded one (a script's run records its call of jaxtl.distill.distill)",
    )
    p.add_argument(
        "--run-commit",
        help="the jaxtl commit the run used: needed when report.json has no provenance, and given, it replaces "
        "the recorded one",
    )
    args = p.parse_args(argv)
    path = args.run / "report.json"
    if not path.is_file():
        p.error(f"{path}: no report.json (the run has not finished)")
    report = json.loads(path.read_text())
    recorded = report.get("provenance", {})
    run_command = args.run_command or recorded.get("command")
    run_commit = args.run_commit or recorded.get("jaxtl_commit")
    if not (run_command and run_commit):
        p.error(f"{path} records no provenance: give --run-command and --run-commit")
    import _harness as harness

    meta = harness.run_metadata("distill_report.py", argv)
    report = harness.relative_paths(report)  # results files name no machine's folders
    meta.update(
        run_command=run_command,
        run_commit=run_commit,
        recorded_command=recorded.get("command"),
        run_date=recorded.get("date"),
        teacher=report["config"]["teacher"]["model"],
        report={k: v for k, v in report.items() if k != "provenance"},
    )
    for u in (meta["report"].get("uncertainty") or {}).values():
        for key in [k for k in u if k.endswith("_per_structure")]:
            u.pop(key)
    harness.write_results(args.results, meta, rows_of(report), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
