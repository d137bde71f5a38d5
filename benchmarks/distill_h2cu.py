"""Distillation on the paper's system: H2 over Cu surfaces.

Teacher: ../shared/models/h2cu_mace.model (mace-torch, converted here). Starts: Cu slabs
of ../shared/data/h2cu_slabs/*.in (FHI-aims geometry files) with one H2 molecule placed
at a random lateral position and orientation, its centre 1.5-3 A above the top Cu
layer. Langevin MD with the teacher samples structures, the teacher labels them, and
students of a few sizes are trained on the same labels; the report gives each
student's errors against the teacher on held-out structures and its energy+forces speed
next to the teacher's (same structures, same CPU, interleaved calls).

    python benchmarks/distill_h2cu.py --fast          # about a minute; run by tests/distill
    python benchmarks/distill_h2cu.py                 # the full run (results below)

Writes OUT/results.json and OUT/results.md (the trade-off table).

Results (`benchmarks/results/h2cu_students.md`, `benchmarks/results/h2cu_distill/`):
labels from the teacher's own MD on an H200 (`benchmarks/gpu_studies.sh`: 8 starts, 2 per
slab, x 2,500 Langevin steps at 600 K, every 10th frame + 1 rattled copy = 4,016
structures, 402 held out), students trained on this CPU with `--labelled`:

    python benchmarks/distill_h2cu.py --out runs/d3 --students A2 --md-steps 2500 --starts-per-slab 2 \
        --epochs 80 --batch-size 32                                     # samples, labels, trains A2
    python benchmarks/distill_h2cu.py --out runs/d3_F2 --students F2 --labelled runs/d3/A2/labelled.xyz \
        --epochs 40 --batch-size 32
    python benchmarks/student_speed.py --teacher runs/d3/teacher --students runs/d3_F2/F2/student/model \
        runs/d3/A2/student/model --structures runs/d3/A2/test.xyz --out benchmarks/results/h2cu_students

| student | params | structures | forces RMSE vs teacher (meV/A) | energy RMSE (meV/atom) | speed-up (quiet CPU) |
|---|---|---|---|---|---|
| F2 8x0e L1 c2 x2 r4 | 2304 | 3614 | 19.4 | 10.82 | 5.6x (1.49 vs 8.27 ms) |
| A2 8x0e L1 c2 x2 | 2304 | 3614 | 14.8 | 4.87 | 3.7x (2.25 ms) |
| A2 8x0e L1 c2 x2 | 2304 | 295 | 44.5 | 115.69 | 3.7x |

More data, not more capacity, was what the students lacked: the same A2 went from 44.5 to
14.8 meV/A. A smaller cutoff buys speed (fewer edges) at some accuracy. Speed of these
small models is dominated by fixed per-call costs (about 1-2 ms), which caps the ratio;
an earlier run's one-interaction students S, M and L (328 structures, timed under load)
reached 4.4-10x but 47-105 meV/A.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models" / "h2cu_mace.model"
SLABS = SHARED / "data" / "h2cu_slabs"

# name -> student MACEConfig fields (1 interaction each; r_max 5 A like the teacher)
STUDENTS = {
    "S 8x0e L1 c1 r4": dict(hidden_irreps="8x0e", max_ell=1, correlation=1, radial_MLP=(16, 16), MLP_irreps="8x0e",
                            num_bessel=6, r_max=4.0),
    "M 16x0e L1 c2": dict(hidden_irreps="16x0e", max_ell=1, correlation=2, radial_MLP=(16, 16), MLP_irreps="16x0e",
                          num_bessel=8),
    "L 16x0e L1 c3": dict(hidden_irreps="16x0e", max_ell=1, correlation=3, radial_MLP=(16, 16), MLP_irreps="16x0e",
                          num_bessel=8),
    # two interactions: the teacher's receptive field (2 x 5 A), few channels
    "A2 8x0e L1 c2 x2": dict(num_interactions=2, hidden_irreps="8x0e", max_ell=1, correlation=2, radial_MLP=(16, 16),
                             MLP_irreps="8x0e", num_bessel=6),
    "D2 8x0e L2 c2 x2 r4.5": dict(num_interactions=2, hidden_irreps="8x0e", max_ell=2, correlation=2,
                                  radial_MLP=(32, 32), MLP_irreps="8x0e", num_bessel=8, r_max=4.5),
    "E2 8x0e L1 c2 x2 r4.5": dict(num_interactions=2, hidden_irreps="8x0e", max_ell=1, correlation=2,
                                  radial_MLP=(16, 16), MLP_irreps="8x0e", num_bessel=6, r_max=4.5),
    "F2 8x0e L1 c2 x2 r4": dict(num_interactions=2, hidden_irreps="8x0e", max_ell=1, correlation=2,
                                radial_MLP=(16, 16), MLP_irreps="8x0e", num_bessel=6, r_max=4.0),
    "B2 16x0e L1 c2 x2": dict(num_interactions=2, hidden_irreps="16x0e", max_ell=1, correlation=2,
                              radial_MLP=(16, 16), MLP_irreps="16x0e", num_bessel=6),
    "C2 12x0e L1 c3 x2": dict(num_interactions=2, hidden_irreps="12x0e", max_ell=1, correlation=3,
                              radial_MLP=(32, 32), MLP_irreps="12x0e", num_bessel=8),
}
MAIN_STUDENT = "M 16x0e L1 c2"

SETTINGS = {
    "fast": dict(slabs=["cu111.in", "cu100.in"], md_steps=40, keep_every=10, rattle=1, temperature=600,
                 epochs=4, students=[MAIN_STUDENT], speed_repeats=3),
    "full": dict(slabs=["cu111.in", "cu100.in", "cu110.in", "cu211.in"], md_steps=400, keep_every=10, rattle=1,
                 temperature=600, epochs=50, students=list(STUDENTS), speed_repeats=20),
}


def place_h2(slab, rng: np.random.Generator, height=(1.5, 3.0), bond: float = 0.74):
    """A copy of `slab` with an H2 at a random lateral position and orientation, its
    centre `height` A (uniform) above the highest Cu atom."""
    from ase import Atoms

    atoms = slab.copy()
    centre = rng.uniform(0, 1, 2) @ atoms.cell.array[:2, :2]
    z = atoms.positions[:, 2].max() + rng.uniform(*height)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    h2 = Atoms("H2", positions=[[*centre, z] + s * 0.5 * bond * axis for s in (-1, 1)])
    return atoms + h2  # FixAtoms indices of the slab still point at Cu atoms


def starts(names, seed: int):
    import ase.io

    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        slab = ase.io.read(SLABS / name, format="aims")
        atoms = place_h2(slab, rng)
        atoms.info["source"] = f"{name} + H2"
        out.append(atoms)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="tiny settings (about a minute)")
    p.add_argument("--out", default=str(ROOT / "runs" / "distill_h2cu"), help="output folder")
    p.add_argument("--epochs", type=int, default=None, help="override the training epochs")
    p.add_argument("--md-steps", type=int, default=None, help="override the MD steps per start")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--students", nargs="+", default=None, help=f"student names (first word), from {list(STUDENTS)}")
    p.add_argument("--labelled", default=None,
                   help="teacher-labelled extended XYZ of an earlier run (skips MD sampling and labelling)")
    p.add_argument("--starts-per-slab", type=int, default=1, help="H2 placements (MD starts) per slab")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--speed-repeats", type=int, default=None, help="override the timed calls of the speed ratio")
    args = p.parse_args(argv)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore", message=".*FHI-aims IO is moving.*")

    from jaxtl.api import load_model
    from jaxtl.distill import SamplingConfig, distill
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    if not TEACHER.exists():
        print(f"skipped: {TEACHER} not found", file=sys.stderr)
        return 0
    s = dict(SETTINGS["fast" if args.fast else "full"])
    if args.epochs is not None:
        s["epochs"] = args.epochs
    if args.md_steps is not None:
        s["md_steps"] = args.md_steps
    if args.speed_repeats is not None:
        s["speed_repeats"] = args.speed_repeats
    if args.students:
        by_key = {name.split()[0]: name for name in STUDENTS}
        unknown = [k for k in args.students if k not in by_key]
        if unknown:
            p.error(f"unknown students {unknown}; choose from {list(by_key)}")
        s["students"] = [by_key[k] for k in args.students]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    teacher_dir = out / "teacher"
    if not (teacher_dir / "config.json").exists():
        from jaxtl.convert.convert import convert_file

        convert_file(TEACHER, teacher_dir, check=not args.fast)  # --fast skips the parity check
    teacher = load_model(teacher_dir)

    sampling = SamplingConfig(md_steps=s["md_steps"], temperature=s["temperature"], dt=1.0, friction=0.01,
                              keep_every=s["keep_every"], n_rattled=s["rattle"], rattle_std=0.05, seed=args.seed)
    train_config = TrainConfig(max_num_epochs=s["epochs"], seed=args.seed, plot=False,
                               optimizer=OptimizerConfig(lr=0.01, scheduler="cosine", decay_epochs=s["epochs"],
                                                         min_lr_factor=0.02))
    results = {"settings": s, "students": {}}
    labelled = args.labelled
    for name in s["students"]:
        run_dir = out / name.split()[0]
        structures = None if labelled else starts(s["slabs"] * args.starts_per_slab, args.seed)
        report = distill(teacher, run_dir, structures=structures,
                         sampling=None if labelled else sampling, student=STUDENTS[name], train_config=train_config,
                         labelled_file=labelled, speed_repeats=s["speed_repeats"], seed=args.seed, progress=False,
                         batch_size=args.batch_size)
        if "n_structures" not in results:
            labelled = labelled or str(run_dir / "labelled.xyz")
            results["sampling"] = report.get("sampling")
            results["labelling"] = report.get("labelling")
            results["n_structures"] = report["n_structures"]
        results["students"][name] = {
            "forces_rmse_meV_per_A": report["student_vs_teacher"]["forces_rmse"],
            "energy_rmse_meV_per_atom": report["student_vs_teacher"]["energy_rmse"],
            "speedup": report["speed"]["speedup"],
            "student_ms": report["speed"]["student"]["ms_per_call"],
            "teacher_ms": report["speed"]["teacher"]["ms_per_call"],
            "n_parameters": report["n_parameters"]["student"],
            "teacher_n_parameters": report["n_parameters"]["teacher"],
            "training_s": report["training"]["wall_s"],
            "report": str(run_dir / "report.json"),
        }
    results["wall_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = table_md(results)
    (out / "results.md").write_text(table)
    print(table)
    return 0


def table_md(results: dict) -> str:
    lines = ["| student | params | forces RMSE vs teacher (meV/A) | energy RMSE (meV/atom) | student ms | "
             "teacher ms | speed-up |", "|---|---|---|---|---|---|---|"]
    for name, r in results["students"].items():
        lines.append(f"| {name} | {r['n_parameters']} | {r['forces_rmse_meV_per_A']:.1f} | "
                     f"{r['energy_rmse_meV_per_atom']:.2f} | {r['student_ms']:.2f} | {r['teacher_ms']:.2f} | "
                     f"{r['speedup']:.1f}x |")
    lab = results.get("labelling") or {}
    lines.append("")
    lines.append(f"structures: {results['n_structures']}; labelling {lab.get('structures_per_s', float('nan')):.1f} "
                 f"structures/s; total {results['wall_s']:.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from jaxtl._allocator import restart_with_hugepages

    restart_with_hugepages()  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
