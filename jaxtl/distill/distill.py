"""`distill`: a teacher's labels in, a small fast student and a report out.

    report = distill("teacher_dir", "out", structures=["starts.xyz"],
                     sampling=SamplingConfig(md_steps=2000, temperature=500, keep_every=20),
                     student=dict(hidden_irreps="16x0e", max_ell=1, correlation=2),
                     train_config=TrainConfig(max_num_epochs=200))

Steps: (1) structures from files or atoms, optionally MD-sampled with the teacher;
(2) teacher labels (`out/labelled.xyz`, reusable through `labelled_file=`);
(3) a held-out teacher-labelled test split (`out/test.xyz`), the rest `out/train.xyz`;
(4) a student MACE trained from scratch with `train_from_scratch` (`out/student/model`),
with the teacher's E0s; (5) the report (`out/report.json`): student errors against the
teacher on the test split, student and teacher errors against DFT where the inputs
carried labels (kept as DFT_* keys) or `dft_test_file` is given, and teacher/student
energy+forces timings side by side.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence

import ase
import ase.io
import numpy as np

from jaxtl.api import LoadedModel, load_model
from jaxtl.distill.labelling import DFT_KEYS, label_structures
from jaxtl.distill.sampling import SamplingConfig, sample_structures
from jaxtl.distill.speed import n_parameters, speedup
from jaxtl.graph.io import DataKeys, check_elements, configuration_from_atoms, read_configurations
from jaxtl.train.config import TrainConfig

log = logging.getLogger("jaxtl.distill")

# A student about 6x cheaper than the H2/Cu teacher (16x0e, max_ell 3, 2 layers) on CPU.
DEFAULT_STUDENT = dict(hidden_irreps="16x0e", max_ell=1, correlation=2, num_interactions=1, radial_MLP=(32, 32),
                       MLP_irreps="16x0e", num_bessel=8)


def student_config(teacher: LoadedModel, fields: Optional[Mapping] = None) -> dict:
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


def _errors(model: LoadedModel, configs) -> Optional[dict]:
    from jaxtl.evaluate import evaluate_configs

    configs = [c for c in configs if c.energy is not None or c.forces is not None]
    return evaluate_configs(model, configs)["all"] if configs else None


def distill(
    teacher,
    out_dir,
    structures: Optional[Sequence] = None,
    sampling: Optional[SamplingConfig] = None,
    student: Optional[Mapping] = None,
    train_config: Optional[TrainConfig] = None,
    labelled_file: Optional[str] = None,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.1,
    batch_size: int = 8,
    label_batch_size: int = 8,
    dft_test_file: Optional[str] = None,
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
        sampling: MD sampling with the teacher (None: no MD).
        student: MACEConfig fields of the student (see `student_config`).
        train_config: training settings of the student.
        labelled_file: teacher-labelled extended XYZ from an earlier run (skips 1-2).
        test_fraction: held-out share of the labelled structures (>= 1 structure).
        valid_fraction: share of the rest used for validation during training.
        batch_size / label_batch_size: structures per training / labelling batch.
        dft_test_file: DFT-labelled structures (REF_* or ASE results) on which teacher
            and student are both evaluated.
        speed_structures / speed_repeats: test structures timed, and rounds of calls.
        seed: seed of the split.

    Raises DataError when a structure holds an element the teacher lacks (naming it),
    and LabellingError when the teacher fails on a structure (what was labelled is kept).
    """
    from jaxtl.train.data import DataConfig
    from jaxtl.train.run import train_from_scratch

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
        check_elements([configuration_from_atoms(a, source=str(a.info.get("source", "<structures>")), index=i,
                                                 min_distance=None, read_labels=False)
                        for i, a in enumerate(starts)], teacher.config.atomic_numbers)
        t0 = time.perf_counter()
        if sampling is not None:
            candidates, report["sampling"] = sample_structures(teacher, starts, sampling, progress=progress)
        else:
            candidates = starts
        report["sampling_s"] = time.perf_counter() - t0
        labelled, stats = label_structures(teacher, candidates, out / "labelled.xyz", label_batch_size, progress)
        report["labelling"] = stats.to_dict()
        labelled_file = str(out / "labelled.xyz")

    order = np.random.default_rng(seed).permutation(len(labelled))
    n_test = max(1, int(round(test_fraction * len(labelled))))
    if len(labelled) - n_test < 2:
        raise ValueError(f"{len(labelled)} labelled structures are too few to hold out a test set and train")
    test = [labelled[i] for i in sorted(order[:n_test])]
    train = [labelled[i] for i in sorted(order[n_test:])]
    ase.io.write(out / "test.xyz", test, format="extxyz")
    ase.io.write(out / "train.xyz", train, format="extxyz")
    report["n_structures"] = {"labelled": len(labelled), "train_and_valid": len(train), "test": len(test)}

    model = student_config(teacher, student)
    train_config = train_config or TrainConfig(max_num_epochs=100, plot=False)
    e0s = dict(zip(teacher.config.atomic_numbers, np.asarray(teacher.constants["atomic_energies"])[0].tolist()))
    data = DataConfig(train_file=str(out / "train.xyz"), test_file=str(out / "test.xyz"),
                      valid_fraction=valid_fraction, batch_size=batch_size, valid_batch_size=batch_size, seed=seed)
    t0 = time.perf_counter()
    result = train_from_scratch(data, out / "student", model=model,
                                train_config=dataclasses.replace(train_config, progress_bar=progress), e0s=e0s)
    report["training"] = {"wall_s": time.perf_counter() - t0, "epochs": len(result.history),
                          "compilations": dict(result.n_compiles), "train_config": train_config.to_dict()}
    student_model = load_model(out / "student" / "model", dtype=teacher.config.dtype)
    report["student_config"] = student_model.config.to_dict()
    report["n_parameters"] = {"teacher": n_parameters(teacher), "student": n_parameters(student_model)}

    test_configs = read_configurations(out / "test.xyz")
    report["student_vs_teacher"] = _errors(student_model, test_configs)
    dft_keys = DataKeys(energy=DFT_KEYS["energy"], forces=DFT_KEYS["forces"], stress=DFT_KEYS["stress"])
    dft_test = [c for c in read_configurations(out / "test.xyz", dft_keys) if c.energy is not None or c.forces is not None]
    if dft_test_file is not None:
        dft_test += read_configurations(dft_test_file)
    if dft_test:
        report["student_vs_dft"] = _errors(student_model, dft_test)
        report["teacher_vs_dft"] = _errors(teacher, dft_test)
    report["speed"] = speedup(teacher, student_model, test[:speed_structures], speed_repeats)
    report["wall_s"] = time.perf_counter() - started
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    log.info("student: forces RMSE vs teacher %.1f meV/A, %.1fx faster than the teacher",
             report["student_vs_teacher"]["forces_rmse"], report["speed"]["speedup"])
    return report
