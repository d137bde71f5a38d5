"""`distill`: a teacher's labels in, a small fast student and a report out.

    report = distill("teacher_dir", "out", structures=["starts.xyz"],
                     sampling=SamplingConfig(md_steps=2000, temperature=500, keep_every=20),
                     student=dict(hidden_irreps="16x0e", max_ell=1, correlation=2),
                     train_config=TrainConfig(max_num_epochs=200))

Steps: (1) structures from files or atoms, optionally MD-sampled with the teacher
(training trajectories, and independent test trajectories: other seeds, temperatures
and held-out starts; the record in `out/sampling.json`); (2) teacher labels
(`out/labelled.xyz`, reusable through `labelled_file=`); (3) the test sets
(`out/test.xyz`, never frames of a training trajectory), the rest `out/train.xyz`;
(4) the student in `out/student/` (`student.json` + the model; `jaxtl.load_calculator`
loads either kind): a MACE trained from scratch with `train_from_scratch`, or a linear
ACE fitted with ace-jax (`ACEStudentConfig`), both with the teacher's E0s; (5) the
report (`out/report.json`): student errors against the teacher on each test set,
student and teacher errors against DFT where the inputs carried labels (kept as DFT_*
keys) or `dft_test_file` is given, and teacher/student energy+forces timings side by
side (ACE posterior uncertainties too).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np

from jaxtl.api import LoadedModel, load_model
from jaxtl.distill.ace import ACEStudentConfig
from jaxtl.distill.labelling import DFT_KEYS, LabellingError, label_structures
from jaxtl.distill.sampling import SamplingConfig, SamplingPlan, sample_plan
from jaxtl.distill.speed import compare_calculators, n_parameters, speedup
from jaxtl.distill.splits import split_labelled
from jaxtl.distill.students import calculator_errors, write_mace_record
from jaxtl.graph.io import check_elements, configuration_from_atoms
from jaxtl.train.config import TrainConfig

log = logging.getLogger("jaxtl.distill")

# A student about 6x cheaper than the H2/Cu teacher (16x0e, max_ell 3, 2 layers) on CPU.
DEFAULT_STUDENT = dict(
    hidden_irreps="16x0e",
    max_ell=1,
    correlation=2,
    num_interactions=1,
    radial_MLP=(32, 32),
    MLP_irreps="16x0e",
    num_bessel=8,
)


def student_config(teacher: LoadedModel, fields: Mapping | None = None) -> dict:
    """MACEConfig fields of the student: `fields` over DEFAULT_STUDENT, with the teacher's
    elements and cutoff unless given; a first layer of mace's default kind."""
    model = dict(DEFAULT_STUDENT)
    model.update(fields or {})
    model.setdefault("atomic_numbers", tuple(teacher.config.atomic_numbers))
    model.setdefault("r_max", float(teacher.config.r_max))
    model.setdefault("interaction_cls_first", "RealAgnosticInteractionBlock")
    if isinstance(model.get("correlation"), int):
        model["correlation"] = (model["correlation"],) * int(model["num_interactions"])
    model["radial_MLP"] = tuple(model["radial_MLP"])
    return model


def read_structures(items: Sequence) -> list[ase.Atoms]:
    """Atoms, or files (every frame; FHI-aims `.in` geometry files included)."""
    out = []
    for item in items:
        if isinstance(item, ase.Atoms):
            out.append(item.copy())
            continue
        path = str(item)
        fmt = "aims" if path.endswith(".in") else None
        frames = ase.io.read(path, index=":", format=fmt)
        for i, atoms in enumerate(frames):
            atoms.info.setdefault("source", f"{path}:{i}")
            out.append(atoms)
    return out


def _errors(model: LoadedModel, configs) -> dict | None:
    from jaxtl.evaluate import evaluate_configs

    configs = [c for c in configs if c.energy is not None or c.forces is not None]
    return evaluate_configs(model, configs)["all"] if configs else None


def distill(
    teacher,
    out_dir,
    structures: Sequence | None = None,
    sampling: SamplingConfig | SamplingPlan | None = None,
    student: Mapping | ACEStudentConfig | None = None,
    train_config: TrainConfig | None = None,
    labelled_file: str | None = None,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    batch_size: int = 8,
    label_batch_size: int = 8,
    dft_test_file: str | None = None,
    speed_structures: int = 4,
    speed_repeats: int = 20,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Distil `teacher` into a student; returns the report (also `out_dir/report.json`).

    Args:
        teacher: a jaxtl model folder, a mace-torch `.model` file (converted into
            `out_dir/teacher`), or a LoadedModel.
        out_dir: folder for labelled.xyz, train.xyz, test.xyz, student/, report.json.
        structures: starting structures (Atoms or files); labelled as they are, or
            used as MD starts when `sampling` is given.
        sampling: MD sampling with the teacher: a SamplingPlan (training runs and
            independent test runs), or a SamplingConfig (its training runs, and one
            independent test run per start at the same temperature with another seed);
            None: no MD.
        student: MACEConfig fields of a MACE student (see `student_config`), or an
            ACEStudentConfig for a linear ACE student (needs the `ace` extra).
        train_config: training settings of a MACE student.
        labelled_file: teacher-labelled extended XYZ from an earlier run (skips 1-2);
            its `split` tags (from a SamplingPlan) decide the test sets.
        test_fraction: held-out share when the structures were labelled as given (no MD);
            MD-sampled sets are judged on independent trajectories (`split_labelled`).
        valid_fraction: share of the rest used for validation during training.
        batch_size / label_batch_size: structures per training / labelling batch.
        dft_test_file: DFT-labelled structures (REF_* or ASE results) on which teacher
            and student are both evaluated.
        speed_structures / speed_repeats: test structures timed, and rounds of calls.
        seed: seed of the split.

    Raises DataError when a structure holds an element the teacher lacks (naming it),
    and LabellingError when the teacher fails on a structure (what was labelled is kept).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    teacher_path = str(teacher) if not isinstance(teacher, LoadedModel) else "<LoadedModel>"
    if not isinstance(teacher, LoadedModel):
        if Path(teacher).is_file():
            from jaxtl.convert.convert import convert_file

            convert_file(teacher, out / "teacher", log=log.info)
            teacher = out / "teacher"
        teacher = load_model(teacher)
    report: dict = {"teacher": teacher_path, "out_dir": str(out)}

    if labelled_file is not None:
        labelled = ase.io.read(labelled_file, index=":")
        report["labelled_file"] = str(labelled_file)
    else:
        if not structures:
            raise ValueError("distill needs structures (atoms or files) or a labelled_file")
        starts = read_structures(structures)
        check_elements(
            [
                configuration_from_atoms(
                    a, source=str(a.info.get("source", "<structures>")), index=i, min_distance=None, read_labels=False
                )
                for i, a in enumerate(starts)
            ],
            teacher.config.atomic_numbers,
        )
        t0 = time.perf_counter()
        if isinstance(sampling, SamplingConfig):
            sampling = SamplingPlan(train=sampling)
        if sampling is not None:
            candidates, record = sample_plan(teacher, starts, sampling, progress=progress)
            report["sampling"] = {k: v for k, v in record.items() if k != "starts"}
        else:
            candidates, record = starts, {"starts": None, "plan": None, "note": "structures labelled as given"}
            for i, a in enumerate(candidates):
                a.info.setdefault("sample_start", i)
        record.update(
            teacher=teacher_path,
            labelled_file="labelled.xyz",
            labelled=None,
            starts=record.get("starts")
            or [
                {"index": i, "formula": a.get_chemical_formula(), "source": str(a.info.get("source", f"start {i}"))}
                for i, a in enumerate(starts)
            ],
        )
        report["sampling_s"] = time.perf_counter() - t0
        _write_record(out, record)  # before labelling: a failure there keeps how the set was drawn
        try:
            labelled, stats = label_structures(teacher, candidates, out / "labelled.xyz", label_batch_size, progress)
        except LabellingError as err:
            _write_record(out, dict(record, labelled=len(err.labelled), labelling_error=str(err)))
            raise
        _write_record(out, dict(record, labelled=len(labelled)))
        report["labelling"] = stats.to_dict()
        labelled_file = str(out / "labelled.xyz")

    train, tests, report["test_split"] = split_labelled(labelled, test_fraction, seed)
    test = [a for frames in tests.values() for a in frames]
    ase.io.write(out / "test.xyz", test, format="extxyz")
    ase.io.write(out / "train.xyz", train, format="extxyz")
    report["n_structures"] = {
        "labelled": len(labelled),
        "train_and_valid": len(train),
        "test": len(test),
        "test_sets": {name: len(frames) for name, frames in tests.items()},
    }
    dft_test = [a for a in test if DFT_KEYS["energy"] in a.info or DFT_KEYS["forces"] in a.arrays]
    dft_extra = ase.io.read(dft_test_file, index=":") if dft_test_file is not None else []

    if isinstance(student, ACEStudentConfig):
        _ace_student(report, teacher, student, out, train, tests, dft_test, dft_extra, speed_structures, speed_repeats)
    else:
        _mace_student(
            report,
            teacher,
            student,
            out,
            train_config,
            valid_fraction,
            batch_size,
            seed,
            progress,
            tests,
            dft_test,
            dft_extra,
            speed_structures,
            speed_repeats,
        )
    report["wall_s"] = time.perf_counter() - started
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    log.info(
        "%s student: forces RMSE vs teacher %.1f meV/A on %d held-out structures, %.1fx faster than the teacher",
        report["student_kind"],
        report["student_vs_teacher"]["forces_rmse"],
        len(test),
        report["speed"]["speedup"],
    )
    return report


def _write_record(out: Path, record: dict) -> None:
    """out/sampling.json: starts, plan, every run (temperature, seed, steps, stride, rattles,
    frames), counts per split and the teacher: what regenerates labelled.xyz."""
    (out / "sampling.json").write_text(json.dumps(record, indent=2, default=str))


def _teacher_e0s(teacher: LoadedModel) -> dict:
    return dict(
        zip(
            (int(z) for z in teacher.config.atomic_numbers),
            np.asarray(teacher.constants["atomic_energies"])[0].tolist(),
        )
    )


def _as_dft(frames):
    """Copies with DFT_* labels as REF_* (the keys the calculator errors read)."""
    out = []
    for a in frames:
        b = a.copy()
        if DFT_KEYS["energy"] in a.info:
            b.info["REF_energy"] = a.info[DFT_KEYS["energy"]]
        else:
            b.info.pop("REF_energy", None)
        if DFT_KEYS["forces"] in a.arrays:
            b.arrays["REF_forces"] = a.arrays[DFT_KEYS["forces"]]
        elif "REF_forces" in b.arrays:
            del b.arrays["REF_forces"]
        out.append(b)
    return out


def _ase_labels(frames):
    """DFT structures given as a file: ASE results or REF_* keys, as REF_*."""
    out = []
    for a in frames:
        b = a.copy()
        results = getattr(a.calc, "results", None) or {}
        if "REF_energy" not in b.info and "energy" in results:
            b.info["REF_energy"] = float(results["energy"])
        if "REF_forces" not in b.arrays and "forces" in results:
            b.arrays["REF_forces"] = np.array(results["forces"])
        b.calc = None
        out.append(b)
    return out


def _mace_student(
    report,
    teacher,
    student,
    out,
    train_config,
    valid_fraction,
    batch_size,
    seed,
    progress,
    tests,
    dft_test,
    dft_extra,
    speed_structures,
    speed_repeats,
) -> None:
    from jaxtl.calculator import MACECalculator
    from jaxtl.train.data import DataConfig
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    model = student_config(teacher, student)
    train_config = train_config or TrainConfig(max_num_epochs=100, plot=False)
    data = DataConfig(
        train_file=str(out / "train.xyz"),
        test_file=str(out / "test.xyz"),
        valid_fraction=valid_fraction,
        batch_size=batch_size,
        valid_batch_size=batch_size,
        seed=seed,
    )
    t0 = time.perf_counter()
    config = ScratchConfig(data, model, dataclasses.replace(train_config, progress_bar=progress), _teacher_e0s(teacher))
    result = train_from_scratch(config, out / "student")
    report["training"] = {
        "wall_s": time.perf_counter() - t0,
        "epochs": len(result.history),
        "compilations": dict(result.n_compiles),
        "train_config": train_config.to_dict(),
    }
    student_model = load_model(out / "student" / "model", dtype=teacher.config.dtype)
    write_mace_record(out / "student", teacher=report["teacher"])
    report["student_kind"] = "mace"
    report["student_config"] = student_model.config.to_dict()
    report["n_parameters"] = {"teacher": n_parameters(teacher), "student": n_parameters(student_model)}
    configs = {
        name: [
            configuration_from_atoms(a, source=f"test set {name}", index=i, min_distance=None)
            for i, a in enumerate(frames)
        ]
        for name, frames in tests.items()
    }
    report["student_vs_teacher"] = _errors(student_model, [c for cs in configs.values() for c in cs])
    report["student_vs_teacher_by_set"] = {name: _errors(student_model, cs) for name, cs in configs.items()}
    dft = _as_dft(dft_test) + _ase_labels(dft_extra)
    if dft:
        dft_configs = [
            configuration_from_atoms(a, source="DFT test", index=i, min_distance=None) for i, a in enumerate(dft)
        ]
        report["student_vs_dft"] = _errors(student_model, dft_configs)
        report["teacher_vs_dft"] = _errors(teacher, dft_configs)
    timed = [a for frames in tests.values() for a in frames][:speed_structures]
    report["speed"] = speedup(teacher, student_model, timed, speed_repeats)
    report["speed"]["through"] = "model.predict on prebuilt graphs (neighbour lists excluded)"
    report["speed_ase"] = _ase_speed(MACECalculator(teacher), MACECalculator(student_model), timed, speed_repeats)


def _ace_student(
    report, teacher, config, out, train, tests, dft_test, dft_extra, speed_structures, speed_repeats
) -> None:
    from jaxtl.calculator import MACECalculator
    from jaxtl.distill.ace import fit_ace_student
    from jaxtl.distill.students import load_calculator

    record = fit_ace_student(train, config, out / "student", e0s=_teacher_e0s(teacher), test_sets=tests)
    report["training"] = {
        "wall_s": record["fit_s"],
        "timings": record["timings"],
        "hyperparameters": record["hyperparameters"],
        "log_evidence": record["log_evidence"],
    }
    report["student_kind"] = "ace"
    report["student_config"] = record["config"]
    report["n_parameters"] = {"teacher": n_parameters(teacher), "student": record["n_basis"]}
    calc = load_calculator(out / "student")
    test = [a for frames in tests.values() for a in frames]
    report["student_vs_teacher"] = calculator_errors(calc, test)
    report["student_vs_teacher_by_set"] = {name: calculator_errors(calc, frames) for name, frames in tests.items()}
    report["uncertainty"] = record.get("uncertainty")
    dft = _as_dft(dft_test) + _ase_labels(dft_extra)
    if dft:
        report["student_vs_dft"] = calculator_errors(calc, dft)
        report["teacher_vs_dft"] = calculator_errors(MACECalculator(teacher), dft)
    report["speed"] = _ase_speed(MACECalculator(teacher), calc, test[:speed_structures], speed_repeats)
    report["speed_ase"] = report["speed"]


def _ase_speed(teacher_calc, student_calc, structures, repeats) -> dict:
    timing = compare_calculators({"teacher": teacher_calc, "student": student_calc}, structures, repeats)
    timing["speedup"] = timing["teacher"]["ms_per_call"] / timing["student"]["ms_per_call"]
    timing["through"] = "ASE calculator calls (neighbour lists included)"
    return timing
