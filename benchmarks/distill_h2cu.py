"""Distillation on the paper's system, H2 over Cu surfaces: linear ACE and small MACE
students judged on trajectories they never saw.

Teacher: ../shared/models/h2cu_mace.model (mace-torch, converted here). Starts: Cu slabs
of ../shared/data/h2cu_slabs/*.in (FHI-aims geometry files), each with one H2 at a
random lateral position and orientation, its centre 1.5-3 A above the top Cu layer.

Stages, each skipped when its output exists (the run resumes where it stopped):
  1. OUT/teacher: the teacher converted to a jaxtl model folder;
  2. OUT/data: Langevin MD with the teacher (`SamplingPlan`): training runs from the
     training slabs; test runs from the same starts with other seeds and at other
     temperatures, and from a slab held out entirely; labels in OUT/data/labelled.xyz,
     the record in OUT/data/sampling.json;
  3. OUT/students/NAME: each student distilled from those labels (`distill` with
     `data.labelled_file`): report.json with errors against the teacher per test set;
  4. OUT/speed_N.json: energy+forces per call through ASE, the teacher and one student
     interleaved in a pass of their own, student by student, in one process, on test
     structures of N = 56 atoms and their 2x2 repeats (224 atoms): with more models in
     one interleaving each model's calls slow down (the teacher 12 ms a call beside 12
     ACE calculators, 6.4 ms beside two); then, in a pass of its own, the teacher beside an
     MP-0-medium-shaped MACE (random weights: speed only), whose 0.2-1 s calls slow the
     next several calls of whichever model follows them (2.7x for the teacher at 56 atoms:
     benchmarks/dev/calls_after_large_model.py), so it never sits in the students' interleaving;
  5. OUT/results.{json,md} and, with --results STEM, STEM.{json,md}: the trade-off table.

    python benchmarks/distill_h2cu.py --fast --out /tmp/h2cu     # about a minute; run by tests/distill
    nice -n 15 python benchmarks/distill_h2cu.py --out runs/h2cu_students \
        --results benchmarks/results/h2cu_students_ace
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
SHARED = ROOT.parent / "shared"
TEACHER = SHARED / "models" / "h2cu_mace.model"
SLABS = SHARED / "data" / "h2cu_slabs"

# name -> student MACEConfig fields; r_max 5 A like the teacher unless given
MACE_STUDENTS = {
    "mace_F2_r4": dict(
        num_interactions=2,
        hidden_irreps="8x0e",
        max_ell=1,
        correlation=2,
        radial_MLP=(16, 16),
        MLP_irreps="8x0e",
        num_bessel=6,
        r_max=4.0,
    ),
    "mace_A2_r5": dict(
        num_interactions=2,
        hidden_irreps="8x0e",
        max_ell=1,
        correlation=2,
        radial_MLP=(16, 16),
        MLP_irreps="8x0e",
        num_bessel=6,
    ),
    "mace_M1_r5": dict(
        hidden_irreps="16x0e", max_ell=1, correlation=2, radial_MLP=(16, 16), MLP_irreps="16x0e", num_bessel=8
    ),
}
# name -> ACEStudentConfig fields
ACE_STUDENTS = {
    "ace_o2_d12_r5": dict(order=2, degree=12, r_max=5.0),
    "ace_o3_d8_r5": dict(order=3, degree=8, r_max=5.0),
    "ace_o3_d8_r4": dict(order=3, degree=8, r_max=4.0),
    "ace_o3_d10_r5": dict(order=3, degree=10, r_max=5.0),
    "ace_o3_d10_r4": dict(order=3, degree=10, r_max=4.0),
    "ace_o3_d12_r5": dict(order=3, degree=12, r_max=5.0),
    "ace_o3_d8_r4.5": dict(order=3, degree=8, r_max=4.5),
    "ace_o3_d8_r3.5": dict(order=3, degree=8, r_max=3.5),
    "ace_o3_d8_r3.5_hot": dict(order=3, degree=8, r_max=3.5),
    "ace_o3_d7_r4": dict(order=3, degree=7, r_max=4.0),
    "ace_o3_d6_r4": dict(order=3, degree=6, r_max=4.0),
    "ace_o3_d8_r4_hot": dict(order=3, degree=8, r_max=4.0),
    "ace_o3_d10_r4_hot": dict(order=3, degree=10, r_max=4.0),
    "ace_o3_d8_r4.5_hot": dict(order=3, degree=8, r_max=4.5),
    "ace_o3_d8_r4_wL2_hot": dict(order=3, degree=8, r_max=4.0, wL=2.0),
    "ace_o4_d8_r4_hot": dict(order=4, degree=8, r_max=4.0),
    "ace_o3_d8_r4_defects": dict(order=3, degree=8, r_max=4.0, uncertainty_structures=0),
    "ace_o3_d8_r4_steps": dict(order=3, degree=8, r_max=4.0, uncertainty_structures=0),
    "ace_o3_d8_r4_steps2": dict(order=3, degree=8, r_max=4.0, uncertainty_structures=0),
    "ace_o3_d8_r4_wsteps": dict(order=3, degree=8, r_max=4.0, uncertainty_structures=0),
    # a smoothness prior of exponent 2 (ACEpotentials' 4): the higher evidence on the wsteps data
    "ace_o3_d8_r4_p2_wsteps": dict(order=3, degree=8, r_max=4.0, smoothness_exponent=2.0, uncertainty_structures=0),
    # the same with higher degrees: more functions, to spend the speed left at 56 atoms on the held-out slab
    "ace_o3_d9_r4_p2_wsteps": dict(order=3, degree=9, r_max=4.0, smoothness_exponent=2.0, uncertainty_structures=0),
    "ace_o3_d10_r4_p2_wsteps": dict(order=3, degree=10, r_max=4.0, smoothness_exponent=2.0, uncertainty_structures=0),
    # 5-body: 656 functions, fewer one-particle (40) and product (485) functions than order 3 / degree 8
    "ace_o4_d7_r4_p2_wsteps": dict(order=4, degree=7, r_max=4.0, smoothness_exponent=2.0, uncertainty_structures=0),
}
# Extra training data of the training starts only (never the held-out slab): hotter Langevin
# runs, each kept frame also rattled. Students named *_hot are fitted to labelled.xyz plus these.
HOT_SAMPLING = dict(md_steps=400, temperature=1000.0, keep_every=20, n_rattled=1, rattle_std=0.1)
HOT_SUFFIX = "_hot"
# Surface defects made from the training starts only (never the held-out slab): each start
# with one top-layer Cu atom lifted onto the surface as an adatom, and with one removed (a
# vacancy), each relaxed with the teacher and then rattled `DEFECT_RATTLES` times with a
# std growing over `DEFECT_RATTLE_STD` A. Students named *_defects are fitted to
# labelled.xyz plus these.
DEFECT_RATTLES = 20
DEFECT_RATTLE_STD = (0.03, 0.15)
DEFECTS_SUFFIX = "_defects"
# Step edges made from the training starts only (never the held-out slab): each start with one
# close-packed row of its outermost Cu layer removed on both faces (`jaxtl.distill.surfaces.
# step_edges`: 7-coordinated edge atoms, as on a stepped facet), sampled by Langevin MD with the
# teacher as the training runs are, seeds of their own. Students named *_steps are fitted to
# labelled.xyz plus these.
STEPS_SAMPLING = dict(md_steps=400, temperature=600.0, keep_every=10, n_rattled=1, rattle_std=0.05)
STEPS_SUFFIX = "_steps"
# Wider terraces: each training start doubled across its close-packed rows (6 rows, one H2) and
# 3 of the 6 rows removed on both faces, so the upper and lower terraces are 3 rows wide as on
# a stepped facet's terraces, with an edge, a middle and an inner-corner row. Students named
# *_steps2 are fitted to labelled_steps.xyz plus these at 600 K; *_wsteps to labelled.xyz plus
# these at 600 K and at 800 K (no one-row steps).
WIDE_STEPS_SAMPLING = dict(md_steps=400, temperature=600.0, keep_every=20, n_rattled=1, rattle_std=0.05)
WIDE_STEPS_SUFFIX = "_steps2"
WIDE_ONLY_SUFFIX = "_wsteps"
# variant -> (times widened, rows off each face, sampling settings, seed offset)
STEP_VARIANTS = {
    "narrow": (1, 1, STEPS_SAMPLING, 4000),
    "wide": (2, 3, WIDE_STEPS_SAMPLING, 5000),
    "wide800": (2, 3, dict(WIDE_STEPS_SAMPLING, temperature=800.0), 6000),
}
# The size of the paper's teachers: MACE-MP-0 medium (128x0e+128x1o, L=3, correlation 3, r 6 A)
MP0_MEDIUM = dict(
    atomic_numbers=(1, 29),
    r_max=6.0,
    num_bessel=8,
    hidden_irreps="128x0e+128x1o",
    max_ell=3,
    correlation=(3, 3),
    num_interactions=2,
    avg_num_neighbors=(40.0, 40.0),
    radial_MLP=(64, 64, 64),
    MLP_irreps="16x0e",
    dtype="float32",
)

SETTINGS = {
    "fast": dict(
        train_slabs=["cu111.in", "cu100.in"],
        held_out_slabs=["cu211.in"],
        per_slab=1,
        md_steps=30,
        test_md_steps=20,
        keep_every=10,
        rattle=1,
        temperature=600.0,
        test_temperatures=(800.0,),
        epochs=3,
        students=["ace_fast", "mace_M1_r5"],
        speed_repeats=2,
        speed_structures=2,
        medium=False,
    ),
    "full": dict(
        train_slabs=["cu111.in", "cu100.in", "cu110.in"],
        held_out_slabs=["cu211.in"],
        per_slab=2,
        md_steps=1000,
        test_md_steps=500,
        keep_every=10,
        rattle=1,
        temperature=600.0,
        test_temperatures=(600.0, 800.0),
        epochs=20,
        students=["ace_o3_d8_r5", "ace_o3_d8_r4", "ace_o2_d12_r5", "mace_F2_r4"],
        speed_repeats=15,
        speed_structures=4,
        medium=True,
    ),
}
ACE_STUDENTS["ace_fast"] = dict(order=2, degree=5, r_max=5.0, map_steps=60)
# ACE students run with their radials read from B-spline tables (the calculator's default:
# forces within ~1e-7 eV/A of the exact radials); they are also timed with the exact radials
EXACT_RADIALS_SUFFIX = "+exact_radials"


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


def stage_data(teacher, out: Path, s: dict, seed: int) -> Path:
    """Sampling and labelling (skipped when OUT/data/labelled.xyz is complete)."""
    from jaxtl.distill import SamplingConfig, SamplingPlan, label_structures, sample_plan

    data = out / "data"
    record_file = data / "sampling.json"
    if record_file.exists() and json.loads(record_file.read_text()).get("complete"):
        return data / "labelled.xyz"
    data.mkdir(parents=True, exist_ok=True)
    names = s["train_slabs"] * s["per_slab"] + s["held_out_slabs"] * s["per_slab"]
    structures = starts(names, seed)
    n_train = len(s["train_slabs"]) * s["per_slab"]
    plan = SamplingPlan(
        train=SamplingConfig(
            md_steps=s["md_steps"],
            temperature=s["temperature"],
            dt=1.0,
            friction=0.01,
            keep_every=s["keep_every"],
            n_rattled=s["rattle"],
            rattle_std=0.05,
            seed=seed,
        ),
        test_temperatures=s["test_temperatures"],
        test_md_steps=s["test_md_steps"],
        test_seed=seed + 1000,
        held_out_starts=tuple(range(n_train, len(names))),
    )
    sampled = data / "sampled.xyz"
    if record_file.exists() and sampled.exists():  # sampling done, labelling interrupted
        import ase.io

        candidates, record = ase.io.read(sampled, ":"), json.loads(record_file.read_text())
    else:
        t0 = time.perf_counter()
        candidates, record = sample_plan(teacher, structures, plan, progress=False)
        record["sampling_s"] = time.perf_counter() - t0
        record["teacher"] = str(TEACHER)
        import ase.io

        ase.io.write(data / "sampled.tmp.xyz", candidates, format="extxyz")
        (data / "sampled.tmp.xyz").rename(sampled)
        record_file.write_text(json.dumps(record, indent=2, default=str))
    _, stats = label_structures(teacher, candidates, data / "labelled.xyz", batch_size=8)
    record.update(labelling=stats.to_dict(), complete=True)
    record_file.write_text(json.dumps(record, indent=2, default=str))
    return data / "labelled.xyz"


def stage_hot(teacher, labelled: Path, out: Path, s: dict, seed: int) -> Path:
    """labelled.xyz plus teacher-labelled frames of hotter, rattled runs from the training starts
    (`HOT_SAMPLING`, seeds of their own), all tagged split=train: OUT/data/labelled_hot.xyz."""
    import ase.io

    from jaxtl.distill import SamplingConfig, label_structures
    from jaxtl.distill.sampling import sample_structures

    target = out / "data" / "labelled_hot.xyz"
    if target.exists():
        return target
    n_train = len(s["train_slabs"]) * s["per_slab"]
    names = s["train_slabs"] * s["per_slab"] + s["held_out_slabs"] * s["per_slab"]
    train_starts = starts(names, seed)[:n_train]  # the same geometries stage_data drew
    config = SamplingConfig(**HOT_SAMPLING, dt=1.0, friction=0.01, seed=seed + 2000)
    frames, report = sample_structures(teacher, train_starts, config, progress=False)
    for a in frames:
        a.info.update(split="train", md_temperature=config.temperature, augment="hot")
    labelled_hot, _ = label_structures(teacher, frames, batch_size=8)
    tmp = target.with_suffix(".tmp.xyz")
    ase.io.write(tmp, ase.io.read(labelled, ":") + labelled_hot, format="extxyz")
    tmp.rename(target)
    (out / "data" / "sampling_hot.json").write_text(json.dumps(report, indent=2, default=str))
    return target


def defect_variants(start):
    """(adatom, vacancy) copies of a slab start: its highest Cu atom moved 1.3 A sideways
    and 1.8 A up, and that atom removed."""
    top = max((i for i in range(len(start)) if start.numbers[i] == 29), key=lambda i: start.positions[i, 2])
    adatom = start.copy()
    adatom.positions[top] += [1.3, 0.0, 1.8]
    vacancy = start.copy()
    del vacancy[top]  # FixAtoms indices follow
    return adatom, vacancy


def stage_defects(teacher_dir: Path, labelled: Path, out: Path, s: dict, seed: int) -> Path:
    """labelled.xyz plus teacher-labelled adatom and vacancy variants of the training starts
    (`defect_variants`), relaxed and rattled, tagged split=train: OUT/data/labelled_defects.xyz."""
    import ase.io
    from ase.optimize import BFGS

    from jaxtl.api import load_model
    from jaxtl.calculator import MACECalculator
    from jaxtl.distill import label_structures

    target = out / "data" / "labelled_defects.xyz"
    if target.exists():
        return target
    n_train = len(s["train_slabs"]) * s["per_slab"]
    names = s["train_slabs"] * s["per_slab"] + s["held_out_slabs"] * s["per_slab"]
    teacher = load_model(teacher_dir)
    calc = MACECalculator(teacher)
    rng = np.random.default_rng(seed + 3000)
    frames = []
    for start in starts(names, seed)[:n_train]:
        for kind, atoms in zip(("adatom", "vacancy"), defect_variants(start)):
            atoms.calc = calc
            BFGS(atoms, logfile=None).run(fmax=0.1, steps=40)
            for std in np.linspace(*DEFECT_RATTLE_STD, DEFECT_RATTLES):
                a = atoms.copy()
                a.calc = None
                a.positions += rng.normal(scale=std, size=a.positions.shape)
                a.info.update(split="train", augment=f"{kind} rattled {std:.3f}", source=start.info["source"])
                frames.append(a)
    labelled_defects, _ = label_structures(teacher, frames, batch_size=8)
    tmp = target.with_suffix(".tmp.xyz")
    ase.io.write(tmp, ase.io.read(labelled, ":") + labelled_defects, format="extxyz")
    tmp.rename(target)
    return target


def widened(start, times: int):
    """`start` repeated `times` times across its close-packed rows, the adsorbate (H) of the
    copies dropped."""
    from jaxtl.distill.surfaces import close_packed_axis

    reps = [1, 1, 1]
    reps[1 - close_packed_axis(start)] = times
    big = start.repeat(reps)
    del big[[i for i in range(len(start), len(big)) if big.numbers[i] != 29]]
    big.info.update(start.info)
    return big


def stage_steps(teacher, labelled: Path, out: Path, s: dict, seed: int, variant: str, tag: str) -> Path:
    """`labelled` plus teacher-labelled MD frames of step-edge variants of the training starts
    (`STEP_VARIANTS[variant]`: widened, rows off each face, sampling, seeds), all tagged
    split=train: OUT/data/labelled_TAG.xyz, the record in OUT/data/sampling_TAG.json."""
    import ase.io

    from jaxtl.distill import SamplingConfig, label_structures, sample_structures
    from jaxtl.distill.surfaces import step_edges

    target = out / "data" / f"labelled_{tag}.xyz"
    if target.exists():
        return target
    n_train = len(s["train_slabs"]) * s["per_slab"]
    names = s["train_slabs"] * s["per_slab"] + s["held_out_slabs"] * s["per_slab"]
    train_starts = starts(names, seed)[:n_train]
    times, rows, settings, offset = STEP_VARIANTS[variant]
    stepped = [
        step_edges(widened(a, times) if times > 1 else a, rows=rows, faces=("top", "bottom")) for a in train_starts
    ]
    config = SamplingConfig(**settings, dt=1.0, friction=0.01, seed=seed + offset)
    frames, report = sample_structures(teacher, stepped, config, progress=False)
    for a in frames:
        start = stepped[a.info["sample_start"]]
        a.info.update(split="train", md_temperature=config.temperature, source=start.info["source"])
        a.info.update(augment="steps: " + start.info["step_edges"])
    labelled_steps, stats = label_structures(teacher, frames, batch_size=8)
    tmp = target.with_suffix(".tmp.xyz")
    ase.io.write(tmp, ase.io.read(labelled, ":") + labelled_steps, format="extxyz")
    tmp.rename(target)
    report.update(
        starts=[{"source": a.info["source"], "n_atoms": len(a), "step_edges": a.info["step_edges"]} for a in stepped],
        labelling=stats.to_dict(),
    )
    (out / "data" / f"sampling_{tag}.json").write_text(json.dumps(report, indent=2, default=str))
    return target


def stage_student(teacher_dir: Path, name: str, labelled: Path, out: Path, s: dict, seed: int, batch_size: int) -> dict:
    """One student distilled from the labels (skipped when its report exists; an interrupted
    one resumes)."""
    from jaxtl.distill import (
        ACEStudentConfig,
        DistillConfig,
        DistillDataConfig,
        MACEStudentConfig,
        SpeedConfig,
        TeacherConfig,
        distill,
    )
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    run = out / "students" / name
    if (run / "report.json").exists():
        return json.loads((run / "report.json").read_text())
    if name in ACE_STUDENTS:
        student = ACEStudentConfig(**ACE_STUDENTS[name], seed=seed)
    else:
        train = TrainConfig(
            max_num_epochs=s["epochs"],
            seed=seed,
            plot=False,
            optimizer=OptimizerConfig(lr=0.01, scheduler="cosine", decay_epochs=s["epochs"], min_lr_factor=0.02),
        )
        student = MACEStudentConfig(model=MACE_STUDENTS[name], train=train, batch_size=batch_size)
    config = DistillConfig(
        TeacherConfig(str(teacher_dir)),
        DistillDataConfig(labelled_file=str(labelled), seed=seed),
        student=student,
        speed=SpeedConfig(structures=s["speed_structures"], repeats=s["speed_repeats"]),
    )
    return distill(config, run, resume=(run / "distill_config.yaml").exists(), progress=False)


def medium_shaped_model():
    """An MP-0-medium-shaped MACE with random weights, for speed only."""
    from jaxtl.api import build_loaded_model
    from jaxtl.model import MACEConfig
    from jaxtl.model.mace import init_variables

    config = MACEConfig(**MP0_MEDIUM)
    variables = init_variables(config, 0)
    return build_loaded_model(config, {"params": variables["params"], "constants": dict(variables["constants"])})


def stage_speed(teacher, names, out: Path, s: dict, repeat: int, medium: bool) -> dict:
    """Energy+forces per call through ASE, all models interleaved on the same structures."""
    import ase.io

    from jaxtl.calculator import MACECalculator
    from jaxtl.distill import compare_calculators
    from jaxtl.distill.students import load_calculator

    test = ase.io.read(out / "data" / "labelled.xyz", ":")
    test = [a for a in test if a.info.get("split") != "train"]
    picked = [test[i] for i in np.linspace(0, len(test) - 1, s["speed_structures"]).astype(int)]
    structures = []
    for a in picked:
        b = a.repeat((repeat, repeat, 1)) if repeat > 1 else a.copy()
        b.calc = None
        structures.append(b)
    teacher_calc = load_calculator(out / "teacher")  # every model through the same path
    load_before = os.getloadavg()
    timing, teacher_ms = {}, []
    for name in names:  # the teacher beside one student at a time, as benchmarks/student_speed.py times them
        calcs = {"teacher": teacher_calc, name: load_calculator(out / "students" / name / "student")}
        if name in ACE_STUDENTS:  # the same student with the radials as fitted
            calcs[name + EXACT_RADIALS_SUFFIX] = load_calculator(out / "students" / name / "student", radial_table=None)
        pair = compare_calculators(calcs, structures, repeats=s["speed_repeats"])
        for key in calcs:
            if key != "teacher":
                timing[key] = {**pair[key], "teacher_ms_per_call": pair["teacher"]["ms_per_call"]}
        teacher_ms.append(pair["teacher"]["ms_per_call"])
        timing.update({k: pair[k] for k in ("n_structures", "n_atoms_mean", "device")})
    timing["teacher"] = {"ms_per_call": float(np.median(teacher_ms)), "ms_per_call_by_pass": teacher_ms}
    timing["load_average"] = {"before": list(load_before), "after": list(os.getloadavg())}
    if medium:  # the teacher's time in this pass links the medium model to the students
        pair = {"teacher": teacher_calc, "mp0_medium_shaped": MACECalculator(medium_shaped_model())}
        timing["medium_pass"] = compare_calculators(pair, structures, repeats=s["speed_repeats"])
    (out / f"speed_{len(structures[0])}.json").write_text(json.dumps(timing, indent=2))
    return timing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fast", action="store_true", help="tiny settings (about a minute)")
    p.add_argument("--out", default=str(ROOT / "runs" / "distill_h2cu"), help="run folder (resumable)")
    p.add_argument("--results", default=None, help="also write the table to STEM.json / STEM.md")
    p.add_argument(
        "--students", nargs="+", default=None, help=f"students, from {list(ACE_STUDENTS) + list(MACE_STUDENTS)}"
    )
    p.add_argument("--epochs", type=int, default=None, help="override the MACE training epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--students-only",
        action="store_true",
        help="stop after fitting the students (run students in parallel processes, then time them all "
        "in one final run)",
    )
    args = p.parse_args(argv)

    import logging
    import warnings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("absl", "jax", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*FHI-aims IO is moving.*")
    warnings.filterwarnings("ignore", message=".*Skipping unhashable information.*")

    if not TEACHER.exists():
        print(f"skipped: {TEACHER} not found", file=sys.stderr)
        return 0
    s = dict(SETTINGS["fast" if args.fast else "full"])
    if args.epochs is not None:
        s["epochs"] = args.epochs
    if args.students:
        unknown = [k for k in args.students if k not in ACE_STUDENTS and k not in MACE_STUDENTS]
        if unknown:
            p.error(f"unknown students {unknown}")
        s["students"] = args.students
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    from jaxtl.api import load_model

    teacher_dir = out / "teacher"
    if not (teacher_dir / "config.json").exists():
        from jaxtl.convert.convert import convert_file

        convert_file(TEACHER, teacher_dir, check=not args.fast)  # --fast skips the parity check
    teacher = load_model(teacher_dir)
    labelled = stage_data(teacher, out, s, args.seed)
    reports = {}
    for name in s["students"]:
        logging.info("student %s", name)
        data = stage_hot(teacher, labelled, out, s, args.seed) if name.endswith(HOT_SUFFIX) else labelled
        if name.endswith(DEFECTS_SUFFIX):
            data = stage_defects(teacher_dir, labelled, out, s, args.seed)
        if name.endswith(STEPS_SUFFIX) or name.endswith(WIDE_STEPS_SUFFIX):
            data = stage_steps(teacher, labelled, out, s, args.seed, "narrow", "steps")
        if name.endswith(WIDE_STEPS_SUFFIX):
            data = stage_steps(teacher, data, out, s, args.seed, "wide", "steps2")
        if name.endswith(WIDE_ONLY_SUFFIX):
            data = stage_steps(teacher, labelled, out, s, args.seed, "wide", "wsteps600")
            data = stage_steps(teacher, data, out, s, args.seed, "wide800", "wsteps")
        reports[name] = stage_student(teacher_dir, name, data, out, s, args.seed, args.batch_size)
    if args.students_only:
        return 0
    speeds = {}
    for repeat in (1, 2):
        timing = stage_speed(teacher, s["students"], out, s, repeat, s["medium"])
        speeds[int(timing["n_atoms_mean"])] = timing
    results = summarise(reports, speeds, json.loads((out / "data" / "sampling.json").read_text()), s, args, argv)
    results["meta"]["wall_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = table_md(results)
    (out / "results.md").write_text(table)
    if args.results:
        stem = Path(args.results)
        stem.parent.mkdir(parents=True, exist_ok=True)
        stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
        stem.with_suffix(".md").write_text(table)
        tradeoff_plot(results, stem.with_suffix(".png"))
    print(table)
    return 0


def summarise(reports: dict, speeds: dict, record: dict, s: dict, args, argv) -> dict:
    import datetime
    import platform
    import subprocess

    import ase
    import jax

    versions = {"jax": jax.__version__, "ase": ase.__version__, "python": platform.python_version()}
    try:
        import ace_jax

        versions["ace_jax"] = ace_jax.__version__
    except ImportError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = bool(
        subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
    )
    meta = {
        "commit": commit + ("+dirty" if dirty else ""),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_average": {n: t.get("load_average") for n, t in speeds.items()},
        "command": "python benchmarks/distill_h2cu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "device": next(iter(speeds.values()))["device"],
        "cpu": platform.processor() or platform.machine(),
        "versions": versions,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
    }
    students = {}
    for name, r in reports.items():
        row = {
            "kind": r["student_kind"],
            "n_parameters": r["n_parameters"]["student"],
            "forces_rmse_by_set": {k: v["forces_rmse"] for k, v in r["student_vs_teacher_by_set"].items()},
            "energy_rmse_by_set": {k: v["energy_rmse"] for k, v in r["student_vs_teacher_by_set"].items()},
            "forces_rmse_all_tests": r["student_vs_teacher"]["forces_rmse"],
            "fit_s": r["training"]["wall_s"],
            "config": r["student_config"],
        }
        if r.get("uncertainty"):
            row["uncertainty"] = {
                k: {q: v for q, v in u.items() if q != "energy_posterior_std_per_structure"}
                for k, u in r["uncertainty"].items()
            }
        for n, timing in speeds.items():
            for suffix in ("", EXACT_RADIALS_SUFFIX):
                if name + suffix not in timing:
                    continue
                ms = timing[name + suffix]["ms_per_call"]
                row[f"ms{suffix}_{n}"] = ms
                row[f"speedup{suffix}_{n}"] = timing[name + suffix]["teacher_ms_per_call"] / ms
                if "medium_pass" in timing:
                    row[f"speedup_vs_medium{suffix}_{n}"] = _medium_over_teacher(timing) * row[f"speedup{suffix}_{n}"]
        students[name] = row
    teacher = {f"ms_{n}": t["teacher"]["ms_per_call"] for n, t in speeds.items()}
    for n, t in speeds.items():
        if "medium_pass" in t:
            teacher[f"medium_ms_{n}"] = t["medium_pass"]["mp0_medium_shaped"]["ms_per_call"]
            teacher[f"medium_over_teacher_{n}"] = _medium_over_teacher(t)
    sampling = {k: record.get(k) for k in ("counts", "plan", "md_errors", "sampling_s")}
    sampling["starts"] = record.get("starts")
    return {"meta": meta, "sampling": sampling, "teacher": teacher, "students": students}


def _medium_over_teacher(timing: dict) -> float:
    """The MP-0-medium-shaped model's time over the teacher's, both from their own pass."""
    pair = timing["medium_pass"]
    return pair["mp0_medium_shaped"]["ms_per_call"] / pair["teacher"]["ms_per_call"]


def table_md(results: dict) -> str:
    meta = results["meta"]
    sizes = sorted(int(k[3:]) for k in results["teacher"] if k.startswith("ms_"))
    sets = sorted({k for r in results["students"].values() for k in r["forces_rmse_by_set"]})
    head = ["student", "params"] + [f"F RMSE {k} (meV/A)" for k in sets]
    medium = any(k.startswith("medium_ms_") for k in results["teacher"])
    head += [f"ms @{n}" for n in sizes] + [f"speed-up @{n}" for n in sizes]
    head += [f"vs medium @{n}" for n in sizes] if medium else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    teacher_row = ["teacher (h2cu_mace)", ""] + [""] * len(sets)
    teacher_row += [f"{results['teacher'][f'ms_{n}']:.2f}" for n in sizes] + ["1.0x"] * len(sizes)
    teacher_row += [f"{results['teacher'][f'medium_over_teacher_{n}']:.1f}x" for n in sizes] if medium else []
    lines.append("| " + " | ".join(teacher_row) + " |")
    if medium:
        row = ["MP-0-medium-shaped (random)", ""] + [""] * len(sets)
        row += [f"{results['teacher'][f'medium_ms_{n}']:.2f}" for n in sizes]
        row += [f"{1 / results['teacher'][f'medium_over_teacher_{n}']:.2f}x" for n in sizes]
        row += ["1.0x"] * len(sizes)
        lines.append("| " + " | ".join(row) + " |")
    for name, r in results["students"].items():
        for suffix in ("", EXACT_RADIALS_SUFFIX):
            if f"ms{suffix}_{sizes[0]}" not in r:
                continue
            row = [name + suffix, str(r["n_parameters"])]
            row += [f"{r['forces_rmse_by_set'].get(k, float('nan')):.1f}" for k in sets]
            row += [f"{r[f'ms{suffix}_{n}']:.2f}" for n in sizes] + [f"{r[f'speedup{suffix}_{n}']:.1f}x" for n in sizes]
            row += [f"{r[f'speedup_vs_medium{suffix}_{n}']:.1f}x" for n in sizes] if medium else []
            lines.append("| " + " | ".join(row) + " |")
    counts = results["sampling"]["counts"]
    lines += [
        "",
        "Plot: the .png beside this file (force RMSE against ms per call, each size).",
        "",
        f"Labelled structures: {counts}. Test sets never share a trajectory with training "
        "(other seeds/temperatures from the training starts; the held-out slab only in test runs).",
        "Speed: energy+forces per ASE calculator call (neighbour lists included), median of interleaved "
        f"calls in one process on {meta['device']} ({meta['cpu']}), each after an untimed call of the same "
        "model (`compare_calculators`), each student (with its exact-radials twin) beside the teacher in a "
        "pass of its own, its speed-up against the teacher's time in that pass (the teacher row: the median "
        "over the passes); the 224-atom cells are 2x2 repeats. The MP-0-medium-shaped model is "
        "timed beside the teacher in a pass of its own (its long calls slow whichever model follows): its "
        "ms are from that pass, and a student's speed-up over it is (medium / teacher there) x (its speed-up). "
        f"Load average (1, 5, 15 min) before/after each size: {_loads(meta.get('load_average'))}. "
        "Every model through `jaxtl.load_calculator`; ACE students on its compiled path in float64 with "
        f"radials from B-spline tables (the default), {EXACT_RADIALS_SUFFIX}: the same student with the "
        "radials as fitted (errors as the tabulated row to the digits shown).",
        "",
        f"Commit {meta['commit']}, {meta['date']}, versions {meta['versions']}.",
        f"Command: `{meta['command']}`",
        "",
    ]
    for name, r in results["students"].items():
        if r.get("uncertainty"):
            u = {
                k: f"RMSE {v['forces_rmse']:.1f} meV/A; predictive std {v['forces_predictive_std_median']:.1f} "
                f"({100 * v['forces_predictive_within_1std']:.0f}% within 1 std), of which posterior "
                f"{v['forces_posterior_std_median']:.1f} ({100 * v['forces_posterior_within_1std']:.0f}%) "
                f"and fitted noise {v['forces_noise']:.1f}"
                for k, v in r["uncertainty"].items()
            }
            lines.append(f"- {name} force uncertainty: {u}")
    return "\n".join(lines) + "\n"


def tradeoff_plot(results: dict, path: Path) -> None:
    """Force RMSE against the teacher (each test set) against ms per energy+forces call, one
    panel per system size: every student (exact-radials twins left out), the teacher's time
    and the 5x line, the 20 meV/A line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    sizes = sorted(int(k[3:]) for k in results["teacher"] if k.startswith("ms_"))
    sets = sorted({k for r in results["students"].values() for k in r["forces_rmse_by_set"]})
    markers = dict(zip(sets, "os^vD"))
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.5), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        teacher_ms = results["teacher"][f"ms_{n}"]
        ax.axvline(teacher_ms, color="k", ls="--", lw=1, label="teacher")
        ax.axvline(teacher_ms / 5, color="k", ls=":", lw=1, label="5x the teacher")
        ax.axhline(20.0, color="grey", ls=":", lw=1, label="20 meV/A")
        for i, (name, r) in enumerate(results["students"].items()):
            if f"ms_{n}" not in r:
                continue
            for k in sets:
                if k in r["forces_rmse_by_set"]:
                    ax.scatter(
                        r[f"ms_{n}"],
                        r["forces_rmse_by_set"][k],
                        color=f"C{i % 10}",
                        marker=markers[k],
                        label=f"{name}: {k}",
                    )
        ax.set(xscale="log", yscale="log", xlabel=f"ms per energy+forces call, {n} atoms")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(plain)
        ax.set_ylabel("force RMSE against the teacher (meV/A)")
    axes[0][-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5))
    meta = results["meta"]
    fig.suptitle(f"jaxtl {meta['commit'][:12]}, {meta['date']}, {meta['device']}: {meta['command']}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _loads(loads) -> str:
    if not loads:
        return "not recorded"
    return "; ".join(
        f"{n} atoms: " + " / ".join(", ".join(f"{x:.1f}" for x in v[k]) for k in ("before", "after"))
        for n, v in loads.items()
        if v
    )


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
