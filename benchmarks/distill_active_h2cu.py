"""The uncertainty-driven loop against random teacher-MD frames, on H2/Cu with an ACE student:
student error on independent test sets against the number of teacher labels.

Data: the teacher-labelled set of `benchmarks/distill_h2cu.py` (DATA/labelled.xyz: Langevin
MD with the teacher from training slabs, test runs at other seeds and temperatures and from a
held-out slab; the teacher folder next to it). Only the un-rattled MD frames of the training
split are used. Both arms start from the same seeded random subset of them (--initial) and
are judged on the same test sets (every test frame):

  loop:    `jaxtl.distill.active_learning`: each round fits a student, runs Langevin MD with
           it from the training starts, scores the frames by the disagreement of
           --committee readouts drawn from the fit's posterior, and the teacher labels the
           --frames most uncertain; after the last round the student is fitted to them all;
  random:  the same counts of labels, the extra frames drawn at random from the teacher's
           training MD (nested: each count holds the smaller ones), for each --random-seeds.

Every fit resumes from its folder, so a stopped study goes on where it stopped.

    python benchmarks/distill_active_h2cu.py --fast --out /tmp/h2cu_active     # a smoke run
    nice -n 15 python benchmarks/distill_active_h2cu.py --out runs/h2cu_active \\
        --results benchmarks/results/h2cu_active_loop
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
DATA = ROOT / "runs" / "h2cu"

SETTINGS = {
    "full": dict(
        initial=24,
        frames=24,
        rounds=3,
        md_steps=300,
        keep_every=10,
        min_separation=50,
        random_seeds=(0, 1),
        test_every=2,
    ),
    "fast": dict(
        initial=12, frames=6, rounds=1, md_steps=40, keep_every=10, min_separation=20, random_seeds=(0,), test_every=40
    ),
}
STUDENT = dict(order=3, degree=6, r_max=4.0, solver="qr", map_steps=150)
FAST_STUDENT = dict(order=2, degree=5, r_max=4.0, solver="qr", map_steps=60)


def read_data(data: Path, test_every: int):
    """(un-rattled training MD frames, {test set: every test_every-th frame}) of DATA/labelled.xyz."""
    import ase.io

    from jaxtl.distill.splits import split_labelled

    train, tests, _ = split_labelled(ase.io.read(data / "labelled.xyz", index=":"))
    train = [a for a in train if not a.info.get("rattled")]
    return train, {name: frames[::test_every] for name, frames in tests.items()}


def fitted_errors(train, tests, student, folder: Path, e0s) -> dict:
    """Errors on each test set of an ACE student fitted to `train` in `folder` (read back
    when folder/errors.json exists)."""
    from jaxtl.distill.ace import fit_ace_student
    from jaxtl.distill.students import calculator_errors, load_calculator

    done = folder / "errors.json"
    if done.exists():
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    record = fit_ace_student(train, student, folder, e0s=e0s)
    calc = load_calculator(folder)
    errors = {name: calculator_errors(calc, frames) for name, frames in tests.items()}
    result = {"n_train": len(train), "errors": errors, "fit_s": record["fit_s"], "wall_s": time.perf_counter() - t0}
    done.write_text(json.dumps(result, indent=2))
    return result


def random_arm(train, initial, counts, tests, student, out: Path, seed: int, e0s) -> list[dict]:
    """The initial subset plus random training MD frames, one fit per count above the
    initial one (nested sets: each holds the smaller ones)."""
    ids = {id(a) for a in initial}
    pool = [a for a in train if id(a) not in ids]
    order = np.random.default_rng(1000 + seed).permutation(len(pool))
    rows = []
    for count in counts:
        extra = [pool[i] for i in order[: count - len(initial)]]
        result = fitted_errors(initial + extra, tests, student, out / f"random_s{seed}" / f"n{count:04d}", e0s)
        rows.append(dict(arm=f"random (seed {seed})", teacher_labels=count, **result))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="tiny settings (a smoke run)")
    p.add_argument("--data", default=str(DATA), help="folder with data/labelled.xyz and teacher/ (default runs/h2cu)")
    p.add_argument("--out", default=str(ROOT / "runs" / "h2cu_active"), help="run folder (resumable)")
    p.add_argument("--results", default=None, help="write the comparison to STEM.json / STEM.md")
    p.add_argument("--temperature", type=float, default=600.0, help="student MD temperature in K (default 600)")
    p.add_argument("--committee", type=int, default=4, help="posterior draws that score a frame (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--random-seeds", type=int, nargs="+", default=None, help="seeds of the random arm (default 0 1)")
    p.add_argument(
        "--arm",
        choices=["both", "loop", "random", "reference"],
        default="both",
        help="run one part only (processes side by side): the loop, the random arm, or the reference fit to "
        "every training MD frame; 'both' runs (or reads back) all three and writes the comparison (default)",
    )
    args = p.parse_args(argv)

    import logging
    import warnings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*MAP did not converge.*")

    data = Path(args.data)
    if not (data / "data" / "labelled.xyz").exists() or not (data / "teacher" / "config.json").exists():
        print(f"skipped: {data}/data/labelled.xyz or {data}/teacher not found", file=sys.stderr)
        return 0
    s = dict(SETTINGS["fast" if args.fast else "full"])
    if args.random_seeds:
        s["random_seeds"] = tuple(args.random_seeds)
    import jaxtl

    jaxtl.configure_cpu()
    from jaxtl.api import load_model
    from jaxtl.distill.ace import ACEStudentConfig
    from jaxtl.distill.active import ActiveConfig, active_learning, initial_subset
    from jaxtl.distill.distill import _teacher_e0s
    from jaxtl.distill.sampling import SamplingConfig

    loads = [os.getloadavg()]
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_model(data / "teacher")
    e0s = _teacher_e0s(teacher)
    train, tests = read_data(data / "data", s["test_every"])
    student = ACEStudentConfig(**(FAST_STUDENT if args.fast else STUDENT), seed=args.seed)
    active = ActiveConfig(
        rounds=s["rounds"],
        frames=s["frames"],
        initial=s["initial"],
        md=SamplingConfig(
            md_steps=s["md_steps"], temperature=args.temperature, keep_every=s["keep_every"], seed=args.seed
        ),
        committee=args.committee,
        min_separation=s["min_separation"],
        seed=args.seed,
    )
    initial = initial_subset(train, active.initial, active.seed)  # the loop draws the same subset
    counts = [len(initial) + active.frames * r for r in range(1, active.rounds + 1)]
    rows = []
    if args.arm in ("both", "loop"):
        labelled, rounds = active_learning(teacher, train, tests, active, student, out / "loop", e0s)
        final = fitted_errors(labelled, tests, student, out / "loop" / "final", e0s)
        rows += [dict(arm="loop", teacher_labels=r["n_train"], errors=r["errors"], round=r["round"]) for r in rounds]
        rows.append(dict(arm="loop", teacher_labels=len(labelled), round=len(rounds), **final))
        loads.append(os.getloadavg())
    if args.arm in ("both", "random"):
        for seed in s["random_seeds"]:
            if args.arm == "both":  # the fit to the initial subset alone is the loop's first round
                rows.append(dict(arm=f"random (seed {seed})", teacher_labels=len(initial), errors=rounds[0]["errors"]))
            rows += random_arm(train, initial, counts, tests, student, out, seed, e0s)
        loads.append(os.getloadavg())
    if args.arm in ("both", "reference"):
        result = fitted_errors(train, tests, student, out / "reference_all", e0s)
        rows.append(dict(arm="all training MD frames", teacher_labels=len(train), **result))
    if args.arm != "both":
        record = dict(
            arm=args.arm, seeds=s["random_seeds"], loads=loads + [os.getloadavg()], wall_s=time.perf_counter() - started
        )
        name = f"arm_{args.arm}" + (f"_{'_'.join(map(str, s['random_seeds']))}" if args.arm == "random" else "")
        (out / f"{name}.json").write_text(json.dumps(record, indent=1))
        return 0
    meta = _meta(argv, s, active, student, rounds, train, tests, loads, time.perf_counter() - started, out)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))
    if args.results:
        from _harness import write_results

        write_results(Path(args.results), meta, rows, table_md)
    else:
        print(table_md(rows, meta))
    return 0


def _meta(argv, s, active, student, rounds, train, tests, loads, wall_s, out: Path) -> dict:
    import platform

    from _harness import run_metadata

    meta = run_metadata("distill_active_h2cu.py", argv)
    meta.update(
        device=f"cpu ({platform.machine()}, {os.cpu_count()} cores)",
        settings=s,
        active=active.to_dict(),
        student=student.to_dict(),
        n_train_pool=len(train),
        test_sets={name: len(frames) for name, frames in tests.items()},
        load_average_1_5_15=loads,
        wall_s=wall_s,
        score_vs_error=[{"round": r["round"], **r["score_vs_error"]} for r in rounds],
        student_md=[
            {"round": r["round"], "blow_ups": sum(bool(m["error"]) for m in r["md"]), "runs": len(r["md"])}
            for r in rounds
        ],
        chosen_blow_up=[sum(bool(c["blow_up"]) for c in r["chosen"]) for r in rounds],
        arm_runs=[json.loads(p.read_text()) for p in sorted(out.glob("arm_*.json"))],
    )
    return meta


def table_md(rows: list, meta: dict) -> str:
    sets = sorted({name for row in rows for name in row["errors"]})
    counts = sorted({row["teacher_labels"] for row in rows if row["arm"] != "all training MD frames"})
    seeds = sorted({row["arm"] for row in rows if row["arm"].startswith("random")})

    def cell(arm_rows, name):
        values = [r["errors"][name]["forces_rmse"] for r in arm_rows]
        if not values:
            return ""
        if len(values) == 1:
            return f"{values[0]:.1f}"
        return f"{np.mean(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    head = ["teacher labels"]
    head += [f"loop: F RMSE {name} (meV/A)" for name in sets]
    head += [f"random, mean (range) of {len(seeds)} draws: F RMSE {name} (meV/A)" for name in sets]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for count in counts:
        loop = [r for r in rows if r["arm"] == "loop" and r["teacher_labels"] == count]
        random = [r for r in rows if r["arm"] in seeds and r["teacher_labels"] == count]
        cells = [cell(loop, name) for name in sets] + [cell(random, name) for name in sets]
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    for r in rows:
        if r["arm"] == "all training MD frames":
            cells = [cell([r], name) for name in sets]
            lines.append(
                f"| {r['teacher_labels']} (every training MD frame) | " + " | ".join(cells + [""] * len(sets)) + " |"
            )
    per_seed = "; ".join(
        f"{arm}: "
        + ", ".join(
            f"{r['teacher_labels']}: " + "/".join(f"{r['errors'][name]['forces_rmse']:.1f}" for name in sets)
            for r in rows
            if r["arm"] == arm
        )
        for arm in seeds
    )
    text = "\n".join(lines) + "\n\n"
    text += (
        f"ACE student {meta['student']} fitted each time; both arms start from the same {counts[0]} random "
        f"un-rattled training MD frames (of {meta['n_train_pool']}) and are judged on the same test sets "
        f"{meta['test_sets']} (other seeds/temperatures from the training slabs, and a held-out slab). "
        "Teacher labels count the training structures only. Random draws, F RMSE "
        + "/".join(sets)
        + f" by label count: {per_seed}.\n\n"
        f"Loop: {meta['active']['rounds']} rounds of {meta['active']['frames']} frames; student Langevin MD "
        f"{meta['active']['md']['md_steps']} steps at {meta['active']['md']['temperature']} K from each training "
        f"start, every {meta['active']['md']['keep_every']}th frame scored by {meta['active']['committee']} "
        "posterior draws (largest per-atom force std), chosen at least "
        f"{meta['active']['min_separation']} steps apart.\n\n"
        "Rank correlation (Spearman) of the score with the student's real largest per-atom force error, per "
        "round and test set: "
        + "; ".join(
            f"round {c['round']}: "
            + ", ".join(
                f"{k} {v['spearman']:.2f}" for k, v in c.items() if k != "round" and v.get("spearman") is not None
            )
            for c in meta["score_vs_error"]
        )
        + ".\n\n"
        f"Student MD blow-ups per round: {[m['blow_ups'] for m in meta['student_md']]} of "
        f"{meta['student_md'][0]['runs'] if meta['student_md'] else 0} runs; frames chosen for a blow-up: "
        f"{meta['chosen_blow_up']}.\n\n"
        f"Command: `{meta['command']}`; device {meta['device']}; load average (1, 5, 15 min) at the start, "
        f"after the loop, at the end: {[[round(x, 1) for x in load] for load in meta['load_average_1_5_15']]}; "
        f"wall of the run that wrote this file {meta['wall_s'] / 60:.0f} min (the arms may have run before it, "
        "each fit resumed from its folder).\n"
    )
    for run in meta.get("arm_runs", []):
        text += (
            f"\nArm run {run['arm']}"
            + (f" (seeds {run['seeds']})" if run["arm"] == "random" else "")
            + f": wall {run['wall_s'] / 60:.0f} min, load average at its start and end "
            f"{[[round(x, 1) for x in load] for load in (run['loads'][0], run['loads'][-1])]}.\n"
        )
    return text


if __name__ == "__main__":
    sys.exit(main())
