"""Linear ACE fits on aspirin, one per call, to tell a basis limit from a setup or data problem.

Each call fits one ACE (`jaxtl.distill.fit_ace_student`) to one training source and scores
it against DFT on rMD17's aspirin_test.extxyz and against the teacher on a distillation
run's held-out test.xyz; the row (basis, data, functions, fit time, errors, call time) is
appended to OUT/fits.jsonl, and --report writes the table of all rows.

Training sources (--data):
  dft             rMD17 aspirin_train.extxyz with its DFT labels
  teacher-on-dft  the same structures labelled by the teacher (written once to OUT)
  teacher-md      the teacher-labelled MD frames of a distillation run (--md-train)
The first two share structures and differ in labels; the last two share labels and differ in
structures.

    python benchmarks/ace_aspirin_fits.py --out runs/asp_fits --data dft --n 400 --degree 7 \
        --teacher runs/teacher_aspirin/model --md-train runs/aspirin_student/ace_o3_d7/train.xyz \
        --teacher-test runs/aspirin_student/ace_o3_d7/test.xyz
    python benchmarks/ace_aspirin_fits.py --out runs/asp_fits --report benchmarks/results/aspirin_student_fits
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402

DFT_DIR = Path("../shared/data/molecules")
SOURCES = ("dft", "teacher-on-dft", "teacher-md")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the fits (OUT/fits.jsonl, OUT/<name>/student)")
    p.add_argument("--data", choices=SOURCES, help="training source")
    p.add_argument("--n", type=int, default=0, help="training structures, evenly spaced (0: all)")
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--degree", type=int, default=7)
    p.add_argument("--r-max", type=float, default=5.0)
    p.add_argument("--r0", nargs="*", default=(), help="bond lengths as SYMBOL=A (e.g. H=1.0)")
    p.add_argument("--wL", type=float, default=1.5)
    p.add_argument("--no-smoothness-prior", action="store_true")
    p.add_argument(
        "--raw-smoothness-prior",
        action="store_true",
        help="the smoothness prior without jaxtl's rescaling (prior_gamma), for comparison",
    )
    p.add_argument("--teacher", help="teacher model folder (for teacher-on-dft labels)")
    p.add_argument("--md-train", help="a distillation run's teacher-labelled train.xyz (teacher-md)")
    p.add_argument("--teacher-test", help="a distillation run's test.xyz: held-out teacher-labelled MD frames")
    p.add_argument("--dft-test-n", type=int, default=0, help="DFT test structures scored, evenly spaced (0: all 1800)")
    p.add_argument("--name", help="fit name (default from the settings)")
    p.add_argument("--report", help="write the table of OUT/fits.jsonl to this results stem and stop")
    p.add_argument("--notes", help="with --report: a markdown file of findings, placed above the table")
    return p.parse_args(argv)


def _even(frames, n):
    if not n or n >= len(frames):
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, n).astype(int)]


def _as_ref(frames):
    """Copies with the frames' DFT labels (ASE results or REF_* keys) as REF_energy / REF_forces."""
    import ase

    out = []
    for a in frames:
        b = ase.Atoms(numbers=a.numbers, positions=a.positions, pbc=a.pbc)
        b.info["REF_energy"] = float(a.info["REF_energy"] if "REF_energy" in a.info else a.get_potential_energy())
        b.arrays["REF_forces"] = np.asarray(a.arrays["REF_forces"] if "REF_forces" in a.arrays else a.get_forces())
        out.append(b)
    return out


def _teacher_labels(frames, teacher: str, cache: Path):
    """`frames` labelled by the teacher (REF_*), cached in `cache` (extended XYZ)."""
    import ase.io

    if cache.exists():
        return ase.io.read(cache, ":")
    from jaxtl.calculator import MACECalculator

    calc = MACECalculator(teacher)
    out = []
    for a in _as_ref(frames):
        a.calc = calc
        energy, forces = a.get_potential_energy(), a.get_forces()
        a.calc = None
        a.info["REF_energy"], a.arrays["REF_forces"] = float(energy), np.asarray(forces)
        out.append(a)
    ase.io.write(cache, out)
    return out


def _training_set(args, out: Path):
    import ase.io

    if args.data == "teacher-md":
        if not args.md_train:
            raise SystemExit("--data teacher-md needs --md-train")
        return _even(ase.io.read(args.md_train, ":"), args.n)
    dft = ase.io.read(DFT_DIR / "aspirin_train.extxyz", ":")
    if args.data == "dft":
        return _even(_as_ref(dft), args.n)
    if not args.teacher:
        raise SystemExit("--data teacher-on-dft needs --teacher")
    return _even(_teacher_labels(dft, args.teacher, out / "teacher_on_dft_train.xyz"), args.n)


def _config(args):
    from jaxtl.distill.ace import ACEStudentConfig, parse_r0

    return ACEStudentConfig(
        order=args.order,
        degree=args.degree,
        r_max=args.r_max,
        r0=parse_r0(args.r0),
        wL=args.wL,
        smoothness_prior=not args.no_smoothness_prior,
    )


def _call_ms(calc, atoms, repeats=50) -> float:
    """Median energy+forces ASE call time (ms) on `atoms`, positions nudged each call."""
    a = atoms.copy()
    a.calc = calc
    times = []
    for k in range(repeats + 3):
        a.positions = a.positions + 1e-4 * (-1) ** k
        t = time.perf_counter()
        a.get_forces()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times[3:]))


def fit_one(args) -> dict:
    import ase.io

    from jaxtl.distill import fit_ace_student
    from jaxtl.distill.students import calculator_errors, load_calculator

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = _config(args)
    train = _training_set(args, out)
    r0 = "".join(f"_{s}" for s in args.r0)
    name = args.name or (
        f"{args.data}_n{len(train)}_o{args.order}_d{args.degree}_r{args.r_max:g}_wL{args.wL:g}{r0}"
        + ("_iso" if args.no_smoothness_prior else "")
        + ("_rawgamma" if args.raw_smoothness_prior else "")
    )
    if args.raw_smoothness_prior:
        import jaxtl.distill.ace as ace

        ace.prior_gamma = lambda gamma, smooth: np.asarray(gamma, np.float64) if smooth else np.ones_like(gamma)
    record = fit_ace_student(train, config, out / name / "student")
    calc = load_calculator(out / name / "student")
    dft_test = _even(_as_ref(ase.io.read(DFT_DIR / "aspirin_test.extxyz", ":")), args.dft_test_n)
    row = {
        "name": name,
        "data": args.data,
        "n_train": len(train),
        "config": config.to_dict(),
        "n_basis": record["n_basis"],
        "fit_s": record["fit_s"],
        "timings": record["timings"],
        "hyperparameters": record["hyperparameters"],
        "vs_dft": calculator_errors(calc, dft_test),
        "train_fit": calculator_errors(calc, _even(train, 200)),
        "call_ms": _call_ms(calc, dft_test[0]),
        "load_average": os.getloadavg(),
        "meta": harness.run_metadata("ace_aspirin_fits.py", None),
    }
    if args.teacher_test:
        row["vs_teacher"] = calculator_errors(calc, ase.io.read(args.teacher_test, ":"))
    with open(out / "fits.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("name", "n_basis", "fit_s", "vs_dft", "train_fit", "call_ms")}))
    return row


def _markdown(rows, meta) -> str:
    lines = [
        "# Linear ACE fits on aspirin: basis, data, error against DFT and against the teacher",
        "",
        meta.get("notes", ""),
        "",
        "Force RMSE in meV/A (per component), energy RMSE in meV/atom. `vs DFT`: all scored structures of "
        "rMD17 aspirin_test.extxyz; `vs teacher`: the distillation run's held-out teacher-labelled MD frames; "
        "`train`: up to 200 of the training structures against their own labels. Call: median ASE "
        "energy+forces call at 21 atoms (compiled calculator, CPU, shared machine; load average given).",
        "",
        "| fit | data | structures | order | degree | r_max | functions | fit (s) | F vs DFT | E vs DFT "
        "| F vs teacher | F train | sigma_F (meV/A) | call (ms) | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        c = r["config"]
        vt = r.get("vs_teacher", {}).get("forces_rmse")
        sigma_f = 1e3 * np.exp(r["hyperparameters"].get("log_sigma_F", np.nan))
        lines.append(
            f"| {r['name']} | {r['data']} | {r['n_train']} | {c['order']} | {c['degree']} | {c['r_max']:g} "
            f"| {r['n_basis']} | {r['fit_s']:.0f} | {r['vs_dft']['forces_rmse']:.1f} "
            f"| {r['vs_dft']['energy_rmse']:.2f} | {'-' if vt is None else f'{vt:.1f}'} "
            f"| {r['train_fit']['forces_rmse']:.1f} | {sigma_f:.0f} | {r['call_ms']:.2f} "
            f"| {r['load_average'][0]:.1f} |"
        )
    lines += ["", "Commands (one per fit):", ""]
    lines += [f"- `{r['meta']['command']}` at jaxtl {r['meta']['jaxtl_commit'][:7]}, {r['meta']['date']}" for r in rows]
    lines.append(f"\nThis file: `{meta['command']}`.\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = _parse(argv)
    if args.report:
        rows = [json.loads(line) for line in open(Path(args.out) / "fits.jsonl")]
        meta = harness.run_metadata("ace_aspirin_fits.py", argv)
        meta["notes"] = Path(args.notes).read_text() if args.notes else ""
        harness.write_results(Path(args.report), meta, rows, _markdown)
        return 0
    if not args.data:
        raise SystemExit("give --data (or --report)")
    fit_one(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
