"""Stability of the H2/Cu students in NVT MD, and one observable against the teacher's own runs.

Each model (the teacher and every student named) runs Langevin MD at 600 K from the same
starts: Cu slabs of ../shared/data/h2cu_slabs with one H2 placed as in distill_h2cu.py,
the same positions and initial velocities for every model. MACE models (teacher, MACE
students) run on the compiled `MDEngine`; ACE students on the ASE path through
`jaxtl.load_calculator`. Time step and friction are those of the distillation's sampling
(1 fs, 0.01 / fs).

A run is **exploded** when any of these holds in a saved frame (or the engine stopped it:
non-finite energy/forces, two atoms closer than 0.5 A at any step):
  * H-H closer than 0.5 A, Cu-H closer than 1.0 A, Cu-Cu closer than 1.8 A;
  * a force component vector longer than 20 eV/A;
  * a Cu atom more than 3 A from its starting site (the slab coming apart), or any atom
    crossing the cell's z boundary (leaving the slab + vacuum region);
  * the temperature above 3x the target in any frame, or its mean after the first ps
    outside target +-15 %.
An H2 that dissociates or desorbs is chemistry, not a failure: both are recorded.

Observables, each a histogram over the frames after the first ps, compared with the
teacher's run from the same start by the Jensen-Shannon distance (base 2: 0 identical,
1 disjoint), the overlap (sum of bin-wise minima: 1 identical) and the earth mover's
distance W1 (A; free of binning):
  * the Cu-Cu pair distances within 6 A: the headline. At 600 K the H2 leaves the
    surface within the first ps in the teacher's own runs (the molecule has no
    chemisorption well on Cu, and kT = 52 meV is above its physisorption), so the slab is
    what the runs sample densely (1431 pairs a frame), and its structure is where a
    student that is too soft or too stiff shows;
  * the H-H distance (0.5-1.5 A in 0.02 A bins, one overflow bin for a dissociated
    molecule): the H2 stretch, and whether the molecule stays intact like the teacher's;
  * the height of the H2 centre above the mean top Cu layer: where the molecule spends
    its time (desorbed, bouncing through the vacuum, or at the surface); one molecule
    over 20 ps samples it poorly, so read it with the teacher's own first-vs-second-half
    distance, reported as the noise floor of every observable.

Each run appends its frames to OUT/MODEL/START.xyz as they are produced and resumes from
the last complete frame; a finished run leaves OUT/MODEL/START.json and is skipped.

    tests/distill/test_stability.py runs `study` for 50 steps with tiny random models (seconds)
    nice -n 15 python benchmarks/student_stability.py --run-dir runs/h2cu_students --out runs/stability \\
        --results benchmarks/results/h2cu_student_stability
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_h2cu import SLABS, place_h2  # noqa: E402

HELD_OUT_SLABS = ("cu211.in",)  # never seen by the distillation (distill_h2cu.py's SETTINGS)
H, CU = 1, 29


@dataclasses.dataclass(frozen=True)
class Criteria:
    """What counts as an exploded run (distances in A, forces in eV/A, temperatures in K)."""

    min_hh: float = 0.5
    min_cuh: float = 1.0
    min_cucu: float = 1.8
    max_force: float = 20.0
    max_cu_displacement: float = 3.0
    max_temperature_factor: float = 3.0
    mean_temperature_tolerance: float = 0.15
    equilibration_fs: float = 1000.0


@dataclasses.dataclass(frozen=True)
class StabilityConfig:
    """One stability study: the MD settings shared by every run and the histograms."""

    time_ps: float = 20.0
    dt_fs: float = 1.0
    temperature: float = 600.0
    friction: float = 0.01
    save_every: int = 10
    seed: int = 7
    criteria: Criteria = Criteria()

    @property
    def steps(self) -> int:
        return int(round(self.time_ps * 1000.0 / self.dt_fs))


# name -> (range, bins) of each observable's histogram; values above the range go to an overflow bin
OBSERVABLES = {"h_h_distance": ((0.5, 1.5), 50), "cu_cu_distance": ((2.0, 6.0), 200), "h2_height": ((0.0, 45.0), 45)}


def make_starts(names, seed: int):
    """[(label, atoms)]: each slab with one H2 (seeded; the same for every model)."""
    import ase.io

    rng = np.random.default_rng(seed)
    out = []
    for i, name in enumerate(names):
        atoms = place_h2(ase.io.read(SLABS / name, format="aims"), rng)
        out.append((f"{i}_{Path(name).stem}", atoms))
    return out


def _pair_distances(atoms, a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Minimum-image distances between index sets a and b (b None: pairs within a)."""
    d = atoms.get_all_distances(mic=True)
    if b is None:
        return d[np.ix_(a, a)][np.triu_indices(len(a), 1)]
    return d[np.ix_(a, b)].ravel()


def frame_measures(atoms, reference) -> dict:
    """Per-frame quantities of an H2/Cu frame; `reference` is the start (Cu sites, top layer)."""
    from ase.geometry import find_mic

    numbers = atoms.numbers
    h, cu = np.flatnonzero(numbers == H), np.flatnonzero(numbers == CU)
    forces = atoms.get_forces(apply_constraint=False) if atoms.calc is not None else np.zeros((len(atoms), 3))
    frac_z = atoms.cell.scaled_positions(atoms.positions)[:, 2] if atoms.cell.rank == 3 else np.zeros(len(atoms))
    ref_z = reference.positions[cu, 2]
    top = ref_z[ref_z > ref_z.max() - 0.5].mean()
    cu_drift = find_mic(atoms.positions[cu] - reference.positions[cu], reference.cell, reference.pbc)[0]
    hh = _pair_distances(atoms, h) if len(h) > 1 else np.array([np.inf])
    return {
        "hh": hh,
        "cuh": _pair_distances(atoms, cu, h) if len(h) else np.array([np.inf]),
        "cucu": _pair_distances(atoms, cu),
        "max_force": float(np.linalg.norm(forces, axis=1).max()) if np.all(np.isfinite(forces)) else np.inf,
        "cu_displacement": float(np.linalg.norm(cu_drift, axis=1).max()),
        "outside_cell": bool(np.any((frac_z < 0) | (frac_z >= 1))),
        "h2_height": float(atoms.positions[h, 2].mean() - top) if len(h) else np.nan,
    }


def analyse(
    frames, reference, temperature: np.ndarray, time_fs: np.ndarray, config: StabilityConfig, engine_error: str | None
) -> dict:
    """Stability verdict and observable samples of one run.

    frames: saved frames (ASE Atoms with forces); temperature, time_fs: per step, [n_steps + 1].
    Returns {"exploded", "reasons", worst values..., "samples": {observable: 1-D array}}.
    """
    c = config.criteria
    reasons = [f"engine: {engine_error}"] if engine_error else []
    worst = {
        "min_hh": np.inf,
        "min_cuh": np.inf,
        "min_cucu": np.inf,
        "max_force": 0.0,
        "max_cu_displacement": 0.0,
        "max_hh": 0.0,
        "max_h2_height": -np.inf,
    }
    samples = {k: [] for k in OBSERVABLES}
    first_bad = {}
    for atoms in frames:
        m = frame_measures(atoms, reference)
        step = int(atoms.info.get("md_step", 0))
        checks = {
            "min_hh": (m["hh"].min(), m["hh"].min() < c.min_hh),
            "min_cuh": (m["cuh"].min(), m["cuh"].min() < c.min_cuh),
            "min_cucu": (m["cucu"].min(), m["cucu"].min() < c.min_cucu),
            "max_force": (m["max_force"], not m["max_force"] <= c.max_force),
            "max_cu_displacement": (m["cu_displacement"], m["cu_displacement"] > c.max_cu_displacement),
        }
        for key, (value, bad) in checks.items():
            worst[key] = min(worst[key], value) if key.startswith("min") else max(worst[key], value)
            if bad:
                first_bad.setdefault(key, (step, float(value)))
        if m["outside_cell"]:
            first_bad.setdefault("outside_cell", (step, 1.0))
        worst["max_hh"] = max(worst["max_hh"], float(m["hh"].max()))
        worst["max_h2_height"] = max(worst["max_h2_height"], m["h2_height"])
        if atoms.info.get("time_fs", step * config.dt_fs) >= c.equilibration_fs:
            samples["h_h_distance"].extend(m["hh"].tolist())
            samples["cu_cu_distance"].extend(m["cucu"][m["cucu"] < OBSERVABLES["cu_cu_distance"][0][1]].tolist())
            samples["h2_height"].append(m["h2_height"])
    limits = {
        "min_hh": c.min_hh,
        "min_cuh": c.min_cuh,
        "min_cucu": c.min_cucu,
        "max_force": c.max_force,
        "max_cu_displacement": c.max_cu_displacement,
        "outside_cell": "the cell's z range",
    }
    reasons += [f"{k} {v:.3g} at step {s} (limit {limits[k]})" for k, (s, v) in first_bad.items()]
    reasons += temperature_reasons(temperature, time_fs, config) if frames else ["no frames on disk"]
    return {
        "exploded": bool(reasons),
        "reasons": reasons,
        **{k: float(v) for k, v in worst.items()},
        **temperature_summary(temperature, time_fs, config),
        "samples": {k: np.asarray(v) for k, v in samples.items()},
    }


def temperature_summary(temperature: np.ndarray, time_fs: np.ndarray, config: StabilityConfig) -> dict:
    """The highest temperature of a run and its mean after equilibration (K; NaN without frames)."""
    late = temperature[time_fs >= config.criteria.equilibration_fs]
    return {
        "max_temperature_K": float(np.max(temperature)) if len(temperature) else np.nan,
        "mean_temperature_K": float(late.mean()) if len(late) else np.nan,
    }


def temperature_reasons(temperature: np.ndarray, time_fs: np.ndarray, config: StabilityConfig) -> list[str]:
    """The thermostat criteria a run breaks: a frame above max_temperature_factor x the target, or a
    mean after equilibration outside target +- mean_temperature_tolerance."""
    c = config.criteria
    t = temperature_summary(temperature, time_fs, config)
    t_max, t_mean = t["max_temperature_K"], t["mean_temperature_K"]
    reasons = []
    if not t_max <= c.max_temperature_factor * config.temperature:
        reasons.append(f"temperature reached {t_max:.0f} K (limit {c.max_temperature_factor}x{config.temperature} K)")
    if not np.isnan(t_mean) and abs(t_mean - config.temperature) > c.mean_temperature_tolerance * config.temperature:
        reasons.append(
            f"mean temperature after {c.equilibration_fs / 1000:g} ps {t_mean:.0f} K "
            f"(target {config.temperature} K +-{100 * c.mean_temperature_tolerance:.0f} %)"
        )
    return reasons


def histogram(values: np.ndarray, name: str, observables: dict = OBSERVABLES) -> np.ndarray:
    """Normalised histogram of one observable, with underflow and overflow bins at the ends."""
    (lo, hi), bins = observables[name]
    edges = np.concatenate([[-np.inf], np.linspace(lo, hi, bins + 1), [np.inf]])
    counts = np.histogram(np.asarray(values, dtype=float), bins=edges)[0].astype(float)
    return counts / counts.sum() if counts.sum() else counts


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two normalised histograms."""
    if not (p.sum() and q.sum()):
        return float("nan")
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between two samples (their units, A here): the area between the
    empirical CDFs. Free of binning, so it reads where sparse histograms make JS noisy."""
    a, b = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if not (len(a) and len(b)):
        return float("nan")
    grid = np.sort(np.concatenate([a, b]))
    cdf_a = np.searchsorted(a, grid[:-1], side="right") / len(a)
    cdf_b = np.searchsorted(b, grid[:-1], side="right") / len(b)
    return float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(grid)))


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.minimum(p, q).sum()) if p.sum() and q.sum() else float("nan")


# ---- running -----------------------------------------------------------------------------------------------


def model_kind(folder: Path) -> str:
    """'ace' or 'mace' for a student folder (student.json) or a jaxtl model folder."""
    record = folder / "student.json"
    if record.is_file():
        return json.loads(record.read_text())["kind"]
    if (folder / "config.json").is_file():
        return "mace"
    raise ValueError(f"{folder}: neither a student folder (student.json) nor a jaxtl model folder (config.json)")


def mace_model_dir(folder: Path) -> Path:
    record = folder / "student.json"
    if record.is_file():
        return folder / json.loads(record.read_text()).get("model_dir", "model")
    return folder


def run_one(model, kind: str, start, config: StabilityConfig, trajectory: Path) -> dict:
    """Run (or resume) one trajectory to `config.steps`; `model` an MDEngine (kind "mace") or an
    ASE calculator (the ASE path). Returns (all frames on disk, engine error, steps this call, wall s)."""
    from jaxtl.md import MDConfig
    from jaxtl.md.trajectory import FrameWriter, complete_frames

    md = MDConfig(
        steps=config.steps,
        dt=config.dt_fs,
        ensemble="langevin",
        temperature=config.temperature,
        friction=config.friction,
        save_every=config.save_every,
        check_every=config.save_every,
        min_distance=0.5,
        seed=config.seed,
    )
    done = complete_frames(trajectory)
    start_step, atoms = 0, start
    if done and int(done[-1].info.get("md_step", 0)) > 0:
        atoms, start_step = done[-1], int(done[-1].info["md_step"])
        atoms.set_constraint(start.constraints)  # extxyz does not keep FixAtoms
    t0 = time.perf_counter()
    with FrameWriter(trajectory, resume=start_step > 0) as writer:
        if start_step < config.steps:
            if kind == "mace":
                result = model.run(atoms, md, on_frames=writer.write, start_step=start_step)
            else:
                from jaxtl.md.ase_md import run_ase_md

                result = run_ase_md(model, atoms, md, on_frames=writer.write, start_step=start_step)
            error, steps_this = result.error, result.steps_done
        else:
            error, steps_this = None, 0
    wall = time.perf_counter() - t0
    frames = complete_frames(trajectory)
    return frames, error, steps_this, wall


def temperatures(frames, start) -> tuple[np.ndarray, np.ndarray]:
    """[n_frames] temperature (K, over the mobile atoms) and time (fs) of saved frames."""
    from ase import units

    from jaxtl.md.simulate import fixed_atoms

    mobile = ~fixed_atoms(start)
    dof = max(3 * int(mobile.sum()), 1)
    t = np.array(
        [
            2 * 0.5 * np.sum(a.get_masses()[mobile, None] * a.get_velocities()[mobile] ** 2) / (dof * units.kB)
            for a in frames
        ]
    )
    return t, np.array([a.info.get("time_fs", 0.0) for a in frames])


def study(
    models: dict,
    starts,
    config: StabilityConfig,
    out: Path,
    log=print,
    round_ps: float | None = None,
    run=None,
    run_starts=None,
    system: System | None = None,
) -> list[dict]:
    """Run (or resume) every model from every start; rows of the results, with observables vs the teacher.

    models: name -> (kind, folder or calculator); the name "teacher" is the reference.
    round_ps: advance every start of a model by this much in turn (so a run stopped early has
        covered all starts evenly); None: each start to the end before the next.
    run: names of the models to run (None: all); the others are analysed from OUT as they are.
    run_starts: labels of the starts to run (None: all).
    system: what is checked and compared (default: H2 on Cu, this file's criteria and observables).
    """
    from jaxtl.md.trajectory import complete_frames

    system = system or H2CU

    rows, samples = [], {}
    for name, (kind, model) in models.items():
        running = run is None or name in run
        loaded = load(kind, model) if running else None
        targets = np.arange(round_ps, config.time_ps, round_ps).tolist() if round_ps else []
        errors, walls = {}, {}
        for target in [*targets, config.time_ps] if running else []:
            for label, start in starts:
                if errors.get(label) or (run_starts is not None and label not in run_starts):
                    continue
                part = dataclasses.replace(config, time_ps=target)
                frames, error, steps, wall = run_one(loaded, kind, start, part, out / name / f"{label}.xyz")
                errors[label], walls[label] = error, walls.get(label, 0.0) + wall
                log(f"{name} {label}: {target:g} ps target, {steps} steps in {wall:.0f} s, error {error}")
        for label, start in starts:
            trajectory = out / name / f"{label}.xyz"
            summary_file = out / name / f"{label}.json"
            old = json.loads(summary_file.read_text()) if summary_file.exists() else {}
            frames = complete_frames(trajectory)
            error = errors.get(label, old.get("engine_error"))
            wall = walls.get(label, 0.0) + old.get("wall_s", 0.0)
            temp, time_fs = temperatures(frames, start)
            verdict = system.analyse(frames, start, temp, time_fs, config, error)
            samples[(name, label)] = verdict.pop("samples")
            last = int(frames[-1].info.get("md_step", 0)) if frames else 0
            summary = {
                "model": name,
                "kind": kind,
                "start": label,
                "held_out_start": system.held_out(label),
                "n_atoms": len(start),
                "steps": last,
                "ps": last * config.dt_fs / 1000.0,
                "complete": last >= config.steps or error is not None,
                "engine_error": error,
                "wall_s": wall,
                **verdict,
            }
            summary_file.parent.mkdir(parents=True, exist_ok=True)
            summary_file.write_text(json.dumps(summary, indent=1) + "\n")
            log(f"{name} {label}: {summary['ps']:.2f} ps on disk, exploded={summary['exploded']} {summary['reasons']}")
            rows.append(summary)
    for row in rows:
        own_samples = samples[(row["model"], row["start"])]
        ref = samples.get(("teacher", row["start"]))
        for obs in system.observables:
            own = histogram(own_samples[obs], obs, system.observables)
            if row["model"] == "teacher":  # samples are in frame order: halves are the first and last stretch
                a, b = own_samples[obs][: len(own_samples[obs]) // 2], own_samples[obs][len(own_samples[obs]) // 2 :]
                row[f"{obs}_js_teacher_halves"] = js_distance(
                    histogram(a, obs, system.observables), histogram(b, obs, system.observables)
                )
                row[f"{obs}_w1_teacher_halves"] = wasserstein(a, b)
            elif ref is not None:
                teacher = histogram(ref[obs], obs, system.observables)
                row[f"{obs}_js"] = js_distance(own, teacher)
                row[f"{obs}_overlap"] = overlap(own, teacher)
                row[f"{obs}_w1"] = wasserstein(own_samples[obs], ref[obs])
            row[f"{obs}_mean"] = float(np.mean(own_samples[obs])) if own.sum() else None
            row[f"{obs}_std"] = float(np.std(own_samples[obs])) if own.sum() else None
    return rows


def load(kind: str, model):
    """What `run_one` runs: an MDEngine for kind "mace" (a folder or LoadedModel), else an ASE
    calculator (a student folder through `jaxtl.load_calculator`, or a calculator as given)."""
    if kind == "mace":
        from jaxtl.md import MDEngine

        return model if isinstance(model, MDEngine) else MDEngine(model)  # compiled once for every start
    if isinstance(model, (str, Path)):
        from jaxtl import load_calculator

        return load_calculator(model)
    return model


def _held_out(label: str) -> bool:
    return any(label.endswith(Path(s).stem) for s in HELD_OUT_SLABS)


@dataclasses.dataclass(frozen=True)
class System:
    """What a stability study checks and compares for one kind of system.

    observables: name -> ((lo, hi), bins) of each histogram.
    analyse: (frames, start, temperature, time_fs, config, engine_error) -> the verdict dict, with
        "exploded", "reasons" and "samples" ({observable: 1-D array}); see `analyse`.
    held_out: start label -> whether the distillation never trained on that start.
    """

    observables: dict
    analyse: Callable
    held_out: Callable[[str], bool]


H2CU = System(OBSERVABLES, analyse, _held_out)


def markdown(rows: list, meta: dict) -> str:
    cfg = meta["config"]
    lines = [
        f"# H2/Cu students: stability in NVT MD at {cfg['temperature']} K (target {cfg['time_ps']} ps a run)\n",
        f"Langevin, dt {cfg['dt_fs']} fs, friction {cfg['friction']}/fs, frames every {cfg['save_every']} steps; "
        f"explosion criteria {cfg['criteria']}. Observables over the frames after the first "
        f"{cfg['criteria']['equilibration_fs'] / 1000:g} ps, against the teacher's run from the same start: "
        "JS = Jensen-Shannon distance of the histograms (base 2, 0 = identical), W1 = earth mover's distance "
        "(A). Teacher rows: its own first half against its second half (the sampling noise floor).\n",
        "| model | start | ps | exploded | min H-H (A) | min Cu-H (A) | max abs F (eV/A) | max Cu disp. (A) | "
        "mean T (K) | H-H mean+-std (A) | JS H-H | W1 H-H (A) | JS Cu-Cu | W1 Cu-Cu (A) | W1 H2 height (A) |",
        "|" + "---|" * 15,
    ]
    for r in rows:
        t = r["model"] == "teacher"

        def f(key, fmt=".3f"):
            v = r.get(key)
            return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

        x = "_teacher_halves" if t else ""
        lines.append(
            f"| {r['model']} | {r['start']}{' (held out)' if r['held_out_start'] else ''} | {r['ps']:.2f} | "
            f"{'**yes**' if r['exploded'] else 'no'} | {f('min_hh')} | {f('min_cuh')} | {f('max_force', '.2f')} | "
            f"{f('max_cu_displacement', '.2f')} | {f('mean_temperature_K', '.0f')} | "
            f"{f('h_h_distance_mean')}+-{f('h_h_distance_std')} | {f('h_h_distance_js' + x)} | "
            f"{f('h_h_distance_w1' + x, '.4f')} | {f('cu_cu_distance_js' + x)} | {f('cu_cu_distance_w1' + x, '.4f')} | "
            f"{f('h2_height_w1' + x, '.2f')} |"
        )
    reasons = [f"* {r['model']} {r['start']}: {'; '.join(r['reasons'])}" for r in rows if r["reasons"]]
    if reasons:
        lines += ["", "Failures (the first frame breaking each criterion):", *reasons]
    lines += ["", f"Command: `{meta['command']}`; device {meta['device']}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, help="distill_h2cu.py output: teacher/ and students/NAME/student")
    p.add_argument("--students", nargs="+", default=["ace_o3_d8_r4", "mace_F2_r4"])
    p.add_argument(
        "--slabs",
        nargs="+",
        default=["cu111.in", "cu100.in", "cu211.in"],
        help="start slabs in ../shared/data/h2cu_slabs (cu211.in is the distillation's held-out start)",
    )
    p.add_argument("--ps", type=float, default=20.0, help="simulated time per run (ps)")
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, required=True, help="trajectories and per-run summaries (resumable)")
    p.add_argument("--results", type=Path, help="write STEM.json and STEM.md")
    p.add_argument(
        "--models",
        nargs="+",
        help="run only these (teacher and/or students); the rest are analysed "
        "from OUT as they are (several processes can share one OUT, one per model)",
    )
    p.add_argument("--round-ps", type=float, default=1.0, help="advance the starts in turn by this much (ps)")
    p.add_argument("--run-starts", nargs="+", help="run only these start labels (INDEX_SLAB, e.g. 2_cu211)")
    p.add_argument("--analyse-only", action="store_true", help="run nothing: analyse OUT as it is")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    config = StabilityConfig(time_ps=args.ps, save_every=args.save_every, seed=args.seed)
    if args.run_dir is None:
        p.error("--run-dir is required")
    models = {"teacher": ("mace", args.run_dir / "teacher")}
    for s in args.students:
        folder = args.run_dir / "students" / s / "student"
        kind = model_kind(folder)
        models[s] = (kind, mace_model_dir(folder) if kind == "mace" else folder)
    starts = make_starts(args.slabs, args.seed)
    running = set() if args.analyse_only else (set(models) if args.models is None else set(args.models))
    rows = study(models, starts, config, args.out, round_ps=args.round_ps, run=running, run_starts=args.run_starts)
    if args.results:
        import _harness as harness

        meta = harness.run_metadata("student_stability.py", argv)
        meta.update(
            device="cpu",
            config=dataclasses.asdict(config),
            run_dir=harness.relative_paths(str(args.run_dir)),
            starts=[
                {"label": lab, "formula": a.get_chemical_formula(), "held_out": _held_out(lab)} for lab, a in starts
            ],
        )
        harness.write_results(args.results, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
