"""`distill`: a teacher's labels in, a small fast student and a report out.

    config = DistillConfig(
        teacher=TeacherConfig("teacher_dir"),
        data=DistillDataConfig(starts=("starts.xyz",)),
        sampling=SamplingConfig(md_steps=2000, temperature=500, keep_every=20),
        student=MACEStudentConfig(model=dict(hidden_irreps="16x0e", max_ell=1, correlation=2),
                                  train=TrainConfig(max_num_epochs=200)),
    )
    report = distill(config, "out")
    report = distill(config, "out", resume=True)   # an interrupted run, from where it stopped

Steps: (1) structures from files, optionally MD-sampled with the teacher (training
trajectories, and independent test trajectories: other seeds, temperatures and held-out
starts; `out/sampled.xyz`, the record in `out/sampling.json`); (2) teacher labels
(`out/labelled.xyz`, reusable through `data.labelled_file`); (3) the test sets
(`out/test.xyz`, never frames of a training trajectory), the rest `out/train.xyz`;
(3a) with `config.active`, the uncertainty-driven loop (`jaxtl.distill.active`, in
`out/active/`): from a small subset of the training set, rounds of student MD whose least
certain frames the teacher labels, so that the student is fitted to what it chose
(`out/train.xyz` then holds those); (4) the student in `out/student/` (`student.json` + the model; `jaxtl.load_calculator`
loads either kind): a MACE trained from scratch with `train_from_scratch`, or a linear
ACE fitted with ace-jax (`ACEStudentConfig`), both with the teacher's E0s; (5) the
report (`out/report.json`): student errors against the teacher on each test set,
student and teacher errors against DFT where the inputs carried labels (kept as DFT_*
keys) or `data.dft_test_file` is given, and teacher/student energy+forces timings side
by side (ACE posterior uncertainties too). The config is saved first, as
`out/distill_config.yaml`; a resumed run skips the steps whose files are complete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np

from jaxtl.api import LoadedModel, load_model
from jaxtl.config_io import record_config
from jaxtl.distill.ace import ACEStudentConfig
from jaxtl.distill.config import (
    CONFIG_FILE,
    DEFAULT_STUDENT,
    RESUME_MAY_CHANGE,
    DistillConfig,
    DistillDataConfig,
    TeacherConfig,
)
from jaxtl.distill.labelled_set import labelled_set, write_frames
from jaxtl.distill.labelling import DFT_KEYS
from jaxtl.distill.speed import compare_calculators, n_parameters, speedup
from jaxtl.distill.splits import split_labelled
from jaxtl.distill.students import calculator_errors, write_mace_record
from jaxtl.graph.io import configuration_from_atoms
from jaxtl.provenance import jaxtl_commit, provenance
from jaxtl.train.distributed import barrier, is_primary

log = logging.getLogger("jaxtl.distill")

REPORT_FILE = "report.json"
TRAINING_FILE = "training.json"  # in the student folder: a MACE student's training finished


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


def _errors(model: LoadedModel, configs) -> dict | None:
    from jaxtl.evaluate import evaluate_configs

    configs = [c for c in configs if c.energy is not None or c.forces is not None]
    return evaluate_configs(model, configs)["all"] if configs else None


def distill(
    config: DistillConfig, out_dir, *, resume: bool = False, progress: bool = True, command: str | None = None
) -> dict:
    """Distil `config.teacher` into a student; returns the report (also `out_dir/report.json`).

    Args:
        config: teacher, structures, sampling, student and timing settings (`DistillConfig`).
        out_dir: the run folder: distill_config.yaml, sampled.xyz, sampling.json,
            labelled.xyz, train.xyz, test.xyz, student/, report.json.
        resume: continue an interrupted run in `out_dir`: the saved config must equal
            `config` (a MACE student's `train.max_num_epochs` may be raised; input files
            may have moved), finished steps are read back, labelling goes on after the
            last frame written and a MACE student's training from its last checkpoint.
        progress: progress bars (MD, labelling, training).
        command: the command line recorded in the report's provenance (default: the Python call).

    In a multi-process job (`jaxtl.train.distributed`, every process calling `distill` with
    the same arguments and `out_dir` on a shared file system), process 0 samples, labels,
    splits and scores; a MACE student trains data parallel over every device of every
    process (`student.train.n_devices`); each process returns the report.

    Raises ValueError naming the fields when resuming with another config (or asking a
    multi-process job for an ACE student, which is fitted in one process), DataError when a
    structure holds an element the teacher lacks (naming it), and LabellingError when the
    teacher fails on a structure (what was labelled is kept).
    """
    out = Path(out_dir)
    if jax.process_count() > 1 and isinstance(config.student, ACEStudentConfig):
        raise ValueError("student: a linear ACE student is fitted in one process; run it without jax.distributed")
    if is_primary():
        out.mkdir(parents=True, exist_ok=True)
        record_config(config, out / CONFIG_FILE, resume, may_change=RESUME_MAY_CHANGE)
    barrier("jaxtl distill: config recorded")
    finished = _finished_report(out, config) if resume else None
    if finished is not None:
        log.info("resuming %s: the run is finished (%s)", out, out / REPORT_FILE)
        return finished
    started = time.perf_counter()
    teacher, report, train, tests, dft = _labelled_data(config, out, resume, progress) if is_primary() else (None,) * 5
    barrier("jaxtl distill: training and test sets written")
    if isinstance(config.student, ACEStudentConfig):
        if config.active is not None:
            train = _active_training_set(report, teacher, config, out, train, tests, resume, progress)
        _ace_student(report, teacher, config, out, train, tests, dft, resume)
    else:
        teacher = teacher or load_teacher(config.teacher, out, resume=True)  # converted by process 0
        training = _train_mace(teacher, config, out, resume, progress)
        if is_primary():
            report["training"] = training
            _score_mace_student(report, teacher, config, out, tests, dft)
    if is_primary():
        report["wall_s"] = time.perf_counter() - started
        report["config"] = _plain_config(config)
        report["provenance"] = provenance(command or f"jaxtl.distill.distill(config, {str(out)!r})", jaxtl_commit())
        (out / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))
        log.info(
            "%s student: forces RMSE vs teacher %.1f meV/A on %d held-out structures, %.1fx faster than the teacher",
            report["student_kind"],
            report["student_vs_teacher"]["forces_rmse"],
            report["n_structures"]["test"],
            report["speed"]["speedup"],
        )
    barrier("jaxtl distill: report written")
    return json.loads((out / REPORT_FILE).read_text())


def _labelled_data(config: DistillConfig, out: Path, resume: bool, progress: bool):
    """Steps 1-3 on this process: (teacher, report so far, training structures, {test set:
    structures}, DFT-labelled structures); the sets are written to `out`."""
    teacher = load_teacher(config.teacher, out, resume)
    report: dict = {"teacher": config.teacher.model, "out_dir": str(out)}
    labelled = labelled_set(config, teacher, out, report, resume, progress)
    train, tests = _split(config.data, labelled, out, report, resume)
    return teacher, report, train, tests, _dft_structures(config.data, tests)


def _plain_config(config: DistillConfig) -> dict:
    """The config as report.json holds it (JSON's lists for tuples)."""
    return json.loads(json.dumps(config.to_dict(), default=str))


def _finished_report(out: Path, config: DistillConfig) -> dict | None:
    """The report of a finished run of this very config, else None."""
    path = out / REPORT_FILE
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    return report if report.get("config") == _plain_config(config) else None


def load_teacher(teacher: TeacherConfig, out: Path, resume: bool = False) -> LoadedModel:
    """The teacher as a LoadedModel; a mace-torch `.model` file is converted into
    `out/teacher` first (once: a resumed run reuses the conversion)."""
    source = Path(teacher.model)
    if source.is_file():
        converted = out / "teacher"
        if resume and (converted / "config.json").exists():
            log.info("resuming %s: teacher converted already (%s)", out, converted)
        else:
            from jaxtl.convert.convert import convert_file

            convert_file(source, converted, log=log.info)
        source = converted
    try:
        return load_model(source, dtype=teacher.dtype, head=teacher.head)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"teacher.model {teacher.model!r}: {err}") from err


def _split(
    data: DistillDataConfig, labelled: list[ase.Atoms], out: Path, report: dict, resume: bool
) -> tuple[list[ase.Atoms], dict[str, list[ase.Atoms]]]:
    """(training structures, {test set name: structures}); out/train.xyz and out/test.xyz
    (kept as they are when resuming: the split is a function of the labels and the seed)."""
    train, tests, report["test_split"] = split_labelled(labelled, data.test_fraction, data.seed)
    test = [a for frames in tests.values() for a in frames]
    if not (resume and (out / "train.xyz").exists() and (out / "test.xyz").exists()):
        write_frames(out / "test.xyz", test)
        write_frames(out / "train.xyz", train)
    report["n_structures"] = {
        "labelled": len(labelled),
        "train_and_valid": len(train),
        "test": len(test),
        "test_sets": {name: len(frames) for name, frames in tests.items()},
    }
    return train, tests


def _dft_structures(data: DistillDataConfig, tests: dict[str, list[ase.Atoms]]) -> list[ase.Atoms]:
    """DFT-labelled structures (as REF_* keys) both teacher and student are scored on: test
    structures whose inputs carried labels, and `data.dft_test_file`."""
    test = [a for frames in tests.values() for a in frames]
    dft_test = [a for a in test if DFT_KEYS["energy"] in a.info or DFT_KEYS["forces"] in a.arrays]
    extra = ase.io.read(data.dft_test_file, index=":") if data.dft_test_file is not None else []
    return _as_dft(dft_test) + _ase_labels(extra)


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


def _score_mace_student(report, teacher, config: DistillConfig, out: Path, tests, dft) -> None:
    """Score the trained MACE student in out/student into `report`."""
    from jaxtl.calculator import MACECalculator

    student_model = load_model(out / "student" / "model", dtype=teacher.config.dtype)
    write_mace_record(out / "student", teacher=config.teacher.model)
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
    if dft:
        dft_configs = [
            configuration_from_atoms(a, source="DFT test", index=i, min_distance=None) for i, a in enumerate(dft)
        ]
        report["student_vs_dft"] = _errors(student_model, dft_configs)
        report["teacher_vs_dft"] = _errors(teacher, dft_configs)
    timed = [a for frames in tests.values() for a in frames][: config.speed.structures]
    report["speed"] = speedup(teacher, student_model, timed, config.speed.repeats)
    report["speed"]["through"] = "model.predict on prebuilt graphs (neighbour lists excluded)"
    report["speed_ase"] = _ase_speed(
        MACECalculator(teacher), MACECalculator(student_model), timed, config.speed.repeats
    )


def _train_mace(teacher, config: DistillConfig, out: Path, resume: bool, progress: bool) -> dict:
    """The training record of the MACE student in out/student (trained here unless a
    resumed run's student finished its epochs; an interrupted one resumes its checkpoint)."""
    from jaxtl.train.data import DataConfig
    from jaxtl.train.distributed import per_device_batch_size
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    student, folder = config.student, out / "student"
    done_file = folder / TRAINING_FILE
    if resume and done_file.exists():
        done = json.loads(done_file.read_text())
        if done["train_config"]["max_num_epochs"] == student.train.max_num_epochs:
            log.info("resuming %s: the student is trained (%s)", out, folder / "model")
            return done
    per_device = per_device_batch_size(student.batch_size, student.train.n_devices)
    data = DataConfig(
        train_file=str(out / "train.xyz"),
        test_file=str(out / "test.xyz"),
        valid_fraction=student.valid_fraction,
        batch_size=per_device,
        valid_batch_size=per_device,
        seed=config.data.seed,
    )
    scratch = ScratchConfig(
        data,
        student_config(teacher, student.model),
        student.train.replace(progress_bar=progress),
        _teacher_e0s(teacher),
    )
    t0 = time.perf_counter()
    from_checkpoint = resume and (folder / "checkpoints").exists() and _same_devices(folder, student.train.n_devices)
    result = train_from_scratch(scratch, folder, resume=from_checkpoint)
    training = {
        "wall_s": time.perf_counter() - t0,
        "epochs": len(result.history),
        "compilations": dict(result.n_compiles),
        "resumed": from_checkpoint,
        "train_config": student.train.to_dict(),
    }
    if is_primary():
        done_file.write_text(json.dumps(training, indent=2, default=str))
    return training


def _same_devices(folder: Path, n_devices: int) -> bool:
    """Whether the student's interrupted training in `folder` ran on `n_devices` devices.
    If not, it is cleared to start again on these (`train_from_scratch` resumes only the
    settings it saved, the per-device batch among them); the global batch is the same, so
    the student differs by round-off only."""
    import shutil

    from jaxtl.config_io import load_config
    from jaxtl.train.run import CONFIG_FILE as SCRATCH_FILE
    from jaxtl.train.run import ScratchConfig

    saved = folder / SCRATCH_FILE
    if not saved.exists() or load_config(ScratchConfig, saved).train.n_devices == n_devices:
        return True
    log.warning("%s: the student's training ran on other devices; it starts again on %d", folder, n_devices)
    if is_primary():
        shutil.rmtree(folder)
    barrier("jaxtl distill: the student's folder cleared")
    return False


def _active_training_set(report, teacher, config: DistillConfig, out: Path, train, tests, resume, progress):
    """The training set the uncertainty-driven loop labelled (`jaxtl.distill.active`, in
    out/active), written as out/train.xyz; the loop's rounds go into `report`."""
    from jaxtl.distill.active import active_learning

    folder = out / "active"
    if not resume and folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} holds an earlier loop: resume the run or use a new folder")
    train, rounds = active_learning(
        teacher,
        train,
        tests,
        config.active,
        config.student,
        folder,
        e0s=_teacher_e0s(teacher),
        label_batch_size=config.data.label_batch_size,
        progress=progress,
    )
    write_frames(out / "train.xyz", train)
    report["active"] = {"folder": str(folder), "rounds": rounds, "teacher_labels": len(train)}
    report["n_structures"]["train_and_valid"] = len(train)
    return train


def _ace_student(report, teacher, config: DistillConfig, out: Path, train, tests, dft, resume: bool) -> None:
    """Fit (or, resuming, read back) the ACE student and score it into `report`."""
    from jaxtl.calculator import MACECalculator
    from jaxtl.distill.ace import fit_ace_student, read_student
    from jaxtl.distill.students import load_calculator

    folder = out / "student"
    if resume and (folder / "model.npz").exists() and (folder / "student.json").exists():
        log.info("resuming %s: the ACE student is fitted (%s)", out, folder)
        record = read_student(folder)
    else:
        record = fit_ace_student(train, config.student, folder, e0s=_teacher_e0s(teacher), test_sets=tests)
    report["training"] = {
        "wall_s": record["fit_s"],
        "timings": record["timings"],
        "hyperparameters": record["hyperparameters"],
        "log_evidence": record["log_evidence"],
    }
    report["student_kind"] = "ace"
    report["student_config"] = record["config"]
    report["n_parameters"] = {"teacher": n_parameters(teacher), "student": record["n_basis"]}
    calc = load_calculator(folder)
    test = [a for frames in tests.values() for a in frames]
    report["student_vs_teacher"] = calculator_errors(calc, test)
    report["student_vs_teacher_by_set"] = {name: calculator_errors(calc, frames) for name, frames in tests.items()}
    report["uncertainty"] = record.get("uncertainty")
    if dft:
        report["student_vs_dft"] = calculator_errors(calc, dft)
        report["teacher_vs_dft"] = calculator_errors(MACECalculator(teacher), dft)
    report["speed"] = _ase_speed(MACECalculator(teacher), calc, test[: config.speed.structures], config.speed.repeats)
    report["speed_ase"] = report["speed"]


def _ase_speed(teacher_calc, student_calc, structures, repeats) -> dict:
    timing = compare_calculators({"teacher": teacher_calc, "student": student_calc}, structures, repeats)
    timing["speedup"] = timing["teacher"]["ms_per_call"] / timing["student"]["ms_per_call"]
    timing["through"] = "ASE calculator calls (neighbour lists included)"
    return timing
