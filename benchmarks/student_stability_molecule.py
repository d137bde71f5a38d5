"""Stability of a molecule's students in NVT MD, and its bond-length distributions against the teacher's.

The molecular counterpart of student_stability.py (which runs H2 on Cu slabs), with the same
runner: every model (the teacher and each student) runs Langevin MD from the same starts, with
the same initial velocities; MACE models on the compiled `MDEngine`, ACE students on the ASE path
through `jaxtl.load_calculator`; runs append frames as they go and resume from the last one.

Starts: frames of a starts file (for aspirin, benchmarks/distill_aspirin.sh's OUT/starts.xyz: six
frames of the rMD17 pool; the distillation trains on MD from the first five and holds the sixth
out, `--held-out 5`).

The bonds are those of the start (atoms closer than 1.2x the sum of their covalent radii). A run
is **exploded** when any of these holds in a saved frame (or the engine stopped it: non-finite
energy/forces, two atoms closer than 0.5 A at any step):
  * a bond stretched beyond 1.6x its length in the start (the molecule breaking up);
  * two atoms that are not bonded closer than 0.8 A (a new bond; H-H across the ring is ~2.5 A);
  * a force component vector longer than 20 eV/A;
  * the temperature above 3x the target in any frame, or its mean after the first ps outside
    target +-15 %.

Observables, histograms over the frames after the first ps, compared with the teacher's run from
the same start by the Jensen-Shannon distance, the overlap and the earth mover's distance W1 (A):
the bond lengths of each element pair (C-H, C-C, C-O, O-H in aspirin). The teacher's own first
half against its second half is the noise floor of each.

    tests/distill/test_stability.py runs the analysis and a short study (seconds)
    nice -n 15 python benchmarks/student_stability_molecule.py \\
        --teacher runs/lc_aspirin/cells/0.1_f5_s0/run/model \\
        --student ace_o3_d7=runs/aspirin_student/ace_o3_d7/student \\
        --starts runs/aspirin_student/starts.xyz --start-indices 0 2 5 --held-out 5 \\
        --out runs/aspirin_stability --results benchmarks/results/aspirin_student_stability
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import student_stability as stab  # noqa: E402

BOND_HISTOGRAM = ((0.8, 2.0), 240)  # A: every covalent bond of C, H, N, O, with 0.005 A bins


@dataclasses.dataclass(frozen=True)
class MoleculeCriteria:
    """What counts as an exploded molecular run (lengths in A, forces in eV/A)."""

    max_bond_stretch: float = 1.6
    min_nonbonded: float = 0.8
    max_force: float = 20.0
    max_temperature_factor: float = 3.0
    mean_temperature_tolerance: float = 0.15
    equilibration_fs: float = 1000.0


def bonds(atoms) -> tuple[np.ndarray, list[str]]:
    """[n_bonds, 2] atom index pairs closer than 1.2x the sum of covalent radii, and each pair's
    label ("C-H": elements in alphabetical order)."""
    from ase.data import covalent_radii

    d = atoms.get_all_distances()
    radii = covalent_radii[atoms.numbers]
    i, j = np.triu_indices(len(atoms), 1)
    keep = d[i, j] < 1.2 * (radii[i] + radii[j])
    pairs = np.stack([i[keep], j[keep]], axis=1)
    symbols = atoms.get_chemical_symbols()
    return pairs, ["-".join(sorted((symbols[a], symbols[b]))) for a, b in pairs]


def observables_of(start) -> dict:
    """name -> ((lo, hi), bins): one bond-length histogram per element pair bonded in `start`."""
    return {f"bond_{label}": BOND_HISTOGRAM for label in sorted(set(bonds(start)[1]))}


def analyse(frames, start, temperature: np.ndarray, time_fs: np.ndarray, config, engine_error: str | None) -> dict:
    """Stability verdict and bond-length samples of one run (see `student_stability.analyse`);
    `config.criteria` is a MoleculeCriteria."""
    c = config.criteria
    pairs, labels = bonds(start)
    labels = np.asarray(labels)
    length0 = start.get_all_distances()[pairs[:, 0], pairs[:, 1]]
    bonded = np.zeros((len(start), len(start)), bool)
    bonded[pairs[:, 0], pairs[:, 1]] = bonded[pairs[:, 1], pairs[:, 0]] = True
    apart = np.triu(~bonded, 1)
    reasons = [f"engine: {engine_error}"] if engine_error else []
    worst = {"max_bond_stretch": 0.0, "min_nonbonded": np.inf, "max_force": 0.0}
    samples = {f"bond_{label}": [] for label in sorted(set(labels))}
    first_bad = {}
    for atoms in frames:
        d = atoms.get_all_distances()
        step = int(atoms.info.get("md_step", 0))
        lengths = d[pairs[:, 0], pairs[:, 1]]
        forces = atoms.get_forces() if atoms.calc is not None else np.zeros((len(atoms), 3))
        measures = {
            "max_bond_stretch": (float(np.max(lengths / length0)), lambda v: v > c.max_bond_stretch),
            "min_nonbonded": (float(d[apart].min()) if apart.any() else np.inf, lambda v: v < c.min_nonbonded),
            "max_force": (
                float(np.linalg.norm(forces, axis=1).max()) if np.all(np.isfinite(forces)) else np.inf,
                lambda v: not v <= c.max_force,
            ),
        }
        for key, (value, bad) in measures.items():
            worst[key] = min(worst[key], value) if key.startswith("min") else max(worst[key], value)
            if bad(value):
                first_bad.setdefault(key, (step, value))
        if atoms.info.get("time_fs", step * config.dt_fs) >= c.equilibration_fs:
            for label in set(labels):
                samples[f"bond_{label}"].extend(lengths[labels == label].tolist())
    limits = {"max_bond_stretch": c.max_bond_stretch, "min_nonbonded": c.min_nonbonded, "max_force": c.max_force}
    reasons += [f"{k} {v:.3g} at step {s} (limit {limits[k]})" for k, (s, v) in first_bad.items()]
    reasons += stab.temperature_reasons(temperature, time_fs, config) if frames else ["no frames on disk"]
    return {
        "exploded": bool(reasons),
        "reasons": reasons,
        **{k: float(v) for k, v in worst.items()},
        **stab.temperature_summary(temperature, time_fs, config),
        "samples": {k: np.asarray(v) for k, v in samples.items()},
    }


def molecule_system(start, held_out_labels) -> stab.System:
    """The stability checks of a molecule whose bonds are those of `start`."""
    return stab.System(observables_of(start), analyse, lambda label: label in held_out_labels)


def markdown(rows: list, meta: dict) -> str:
    cfg = meta["config"]
    observables = meta["observables"]
    lines = [
        f"# {meta['molecule']} students: stability in NVT MD at {cfg['temperature']} K "
        f"(target {cfg['time_ps']} ps a run)\n",
        f"Langevin, dt {cfg['dt_fs']} fs, friction {cfg['friction']}/fs, frames every {cfg['save_every']} steps; "
        f"explosion criteria {cfg['criteria']}. Bond lengths (bonds of the start) over the frames after the first "
        f"{cfg['criteria']['equilibration_fs'] / 1000:g} ps, against the teacher's run from the same start: "
        "JS = Jensen-Shannon distance of the histograms (base 2, 0 = identical), W1 = earth mover's distance "
        "(A). Teacher rows: its own first half against its second half (the sampling noise floor).\n",
        "| model | start | ps | exploded | max bond stretch | min non-bonded (A) | max abs F (eV/A) | mean T (K) | "
        + " | ".join(f"{o[5:]} mean+-std (A) | JS {o[5:]} | W1 {o[5:]} (A)" for o in observables)
        + " |",
        "|" + "---|" * (8 + 3 * len(observables)),
    ]
    for r in rows:
        x = "_teacher_halves" if r["model"] == "teacher" else ""

        def f(key, fmt=".3f"):
            v = r.get(key)
            return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

        cells = [
            f"{f(o + '_mean', '.4f')}+-{f(o + '_std', '.4f')} | {f(o + '_js' + x)} | {f(o + '_w1' + x, '.4f')}"
            for o in observables
        ]
        lines.append(
            f"| {r['model']} | {r['start']}{' (held out)' if r['held_out_start'] else ''} | {r['ps']:.2f} | "
            f"{'**yes**' if r['exploded'] else 'no'} | {f('max_bond_stretch')} | {f('min_nonbonded')} | "
            f"{f('max_force', '.2f')} | {f('mean_temperature_K', '.0f')} | " + " | ".join(cells) + " |"
        )
    reasons = [f"* {r['model']} {r['start']}: {'; '.join(r['reasons'])}" for r in rows if r["reasons"]]
    if reasons:
        lines += ["", "Failures (the first frame breaking each criterion):", *reasons]
    lines += ["", f"Command: `{meta['command']}`; device {meta['device']}; jaxtl {meta['jaxtl_commit']}."]
    if "--analyse-only" in meta["command"]:
        lines.append(
            "The trajectories were made by the same command without --analyse-only (one process per model, "
            "`--models NAME`)."
        )
    return "\n".join(lines) + "\n"


def _model_arg(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER, got {text!r}")
    return name, Path(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="the teacher: a jaxtl model folder")
    p.add_argument(
        "--student", type=_model_arg, action="append", default=[], help="NAME=FOLDER: a student folder (repeatable)"
    )
    p.add_argument("--starts", type=Path, required=True, help="starting structures (extended XYZ)")
    p.add_argument("--start-indices", type=int, nargs="+", help="frames of --starts to run (default: all)")
    p.add_argument(
        "--held-out", type=int, nargs="*", default=[], help="start indices the distillation never trained on"
    )
    p.add_argument("--ps", type=float, default=20.0, help="simulated time per run (ps)")
    p.add_argument("--dt", type=float, default=0.5, help="time step (fs)")
    p.add_argument("--temperature", type=float, default=600.0, help="K")
    p.add_argument("--save-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--round-ps", type=float, default=1.0, help="advance the starts in turn by this much (ps)")
    p.add_argument("--out", type=Path, required=True, help="trajectories and per-run summaries (resumable)")
    p.add_argument("--results", type=Path, help="write STEM.json and STEM.md")
    p.add_argument("--models", nargs="+", help="run only these (teacher and/or student names); analyse the rest")
    p.add_argument("--analyse-only", action="store_true", help="run nothing: analyse OUT as it is")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import ase.io
    from ase import Atoms

    frames = ase.io.read(args.starts, ":")
    indices = args.start_indices if args.start_indices is not None else list(range(len(frames)))
    for i in [*indices, *args.held_out]:
        if not 0 <= i < len(frames):
            p.error(f"start index {i} is outside {args.starts} ({len(frames)} frames)")
    starts = [(f"{i}", Atoms(frames[i].numbers, frames[i].positions)) for i in indices]
    config = stab.StabilityConfig(
        time_ps=args.ps,
        dt_fs=args.dt,
        temperature=args.temperature,
        save_every=args.save_every,
        seed=args.seed,
        criteria=MoleculeCriteria(),
    )
    models = {"teacher": ("mace", args.teacher)}
    for name, folder in args.student:
        kind = stab.model_kind(folder)
        models[name] = (kind, stab.mace_model_dir(folder) if kind == "mace" else folder)
    system = molecule_system(starts[0][1], {str(i) for i in args.held_out})
    running = set() if args.analyse_only else (set(models) if args.models is None else set(args.models))
    rows = stab.study(models, starts, config, args.out, round_ps=args.round_ps, run=running, system=system)
    if args.results:
        import _harness as harness

        meta = harness.run_metadata("student_stability_molecule.py", argv)
        meta.update(
            device="cpu",
            molecule=starts[0][1].get_chemical_formula(),
            config=dataclasses.asdict(config),
            observables=list(system.observables),
            starts=[{"label": lab, "held_out": system.held_out(lab)} for lab, _ in starts],
        )
        harness.write_results(args.results, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
