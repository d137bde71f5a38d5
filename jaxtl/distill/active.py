"""The uncertainty-driven loop: MD with the student, its least certain frames labelled by
the teacher, refit.

    active = ActiveConfig(rounds=4, frames=20, initial=24,
                          md=SamplingConfig(md_steps=600, temperature=600.0, keep_every=10))
    train, record = active_learning(teacher, train, tests, active, ACEStudentConfig(order=3, degree=7),
                                    "out/active", e0s={1: -13.6, 29: -1.2})

Round r = 0 .. rounds-1: (1) fit student r (a linear ACE and `committee` readouts drawn from
its posterior) to the initial subset of `train` plus every frame labelled so far; (2) its
errors on each test set, and how well its score ranks its real errors there; (3) Langevin MD
with the student from every training start (the first frame of each training trajectory;
held-out starts are never in `train`), every `md.keep_every`-th frame a candidate; (4) each
candidate scored by the committee's force disagreement (`jaxtl.distill.committee`); a
trajectory that blew up (NaN, atoms too close) stops there and keeps its frames, its last
`blow_up_frames` ranked first; (5) the `frames` highest, at least `min_separation` MD steps
apart within a trajectory, labelled by the teacher. The returned training set (the initial
subset and every labelled frame) is what the final student is fitted to (`distill` does it).

The folder `out`, written as the loop goes, so an interrupted loop resumes where it stopped:

    initial.xyz                 the initial subset
    round_NNN/student/          student r: model.npz, committee_k.npz, student.json
    round_NNN/candidates.xyz    the student MD frames, with info `score` (eV/A)
    round_NNN/chosen.xyz        the frames chosen for labelling
    round_NNN/labelled.xyz      their teacher labels, written batch by batch
    round_NNN/round.json        the round's record (written last: the round is complete)
    rounds.json                 every complete round's record

Teacher calls are counted as labelled structures (the test sets' labels, the same for any
way of choosing training frames, are not counted).
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

from jaxtl.api import LoadedModel
from jaxtl.distill.ace import ACEStudentConfig
from jaxtl.distill.committee import committee_forces, force_disagreement, rank_correlation, select_frames
from jaxtl.distill.labelling import LabellingError, label_structures, labelled_so_far, write_frames
from jaxtl.distill.sampling import TRAIN, SamplingConfig

log = logging.getLogger("jaxtl.distill")

ROUNDS_FILE = "rounds.json"
ROUND_FILE = "round.json"
INITIAL_FILE = "initial.xyz"


@dataclasses.dataclass(frozen=True)
class ActiveConfig:
    """Settings of the uncertainty-driven loop.

    Attributes:
        rounds: rounds of student MD, scoring and teacher labelling (each refits the student).
        frames: structures labelled by the teacher per round.
        initial: training structures the loop starts from (a seeded random subset of the
            training split); 0: all of them.
        md: the student's Langevin MD from each training start (md_steps, temperature,
            dt, friction, keep_every, min_distance, seed; rattles are not used).
        committee: posterior draws whose force disagreement scores a structure (>= 2).
        min_separation: fewest MD steps between two chosen frames of one trajectory.
        blow_up_frames: the last frames before a student's MD blew up ranked first.
        check_structures: test structures per set (evenly spaced) on which the score is
            compared with the student's real force error (rank correlation).
        seed: seed of the initial subset and the student MD (round r, start i:
            md.seed + r * n_starts + i).
    """

    rounds: int = 3
    frames: int = 10
    initial: int = 0
    md: SamplingConfig = SamplingConfig(md_steps=500, temperature=300.0, keep_every=10)
    committee: int = 4
    min_separation: int = 50
    blow_up_frames: int = 1
    check_structures: int = 50
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.md, Mapping):
            object.__setattr__(self, "md", SamplingConfig(**self.md))
        if self.rounds < 1 or self.frames < 1 or self.initial < 0:
            raise ValueError(
                f"ActiveConfig: rounds and frames must be >= 1 and initial >= 0, "
                f"got rounds={self.rounds}, frames={self.frames}, initial={self.initial}"
            )
        if self.committee < 2:
            raise ValueError(f"ActiveConfig.committee must be >= 2 (a disagreement needs two), got {self.committee}")
        if self.md.md_steps < 1:
            raise ValueError("ActiveConfig.md.md_steps must be >= 1: the loop samples with the student's MD")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def training_starts(train: Sequence[ase.Atoms]) -> list[ase.Atoms]:
    """The first frame (lowest `md_step`, not rattled) of each training trajectory (info
    `trajectory`, else `sample_start`; a structure without either is a start of its own)."""
    firsts: dict = {}
    for i, atoms in enumerate(train):
        if atoms.info.get("rattled"):
            continue
        key = atoms.info.get("trajectory", atoms.info.get("sample_start", f"structure {i}"))
        step = int(atoms.info.get("md_step", 0))
        if key not in firsts or step < firsts[key][0]:
            firsts[key] = (step, i)
    return [train[i] for _, i in sorted(firsts.values(), key=lambda p: p[1])]


def initial_subset(train: Sequence[ase.Atoms], n: int, seed: int) -> list[ase.Atoms]:
    """`n` training structures drawn without replacement (seeded), in their order; all if n is 0."""
    if n == 0 or n >= len(train):
        return list(train)
    keep = np.sort(np.random.default_rng(seed).choice(len(train), n, replace=False))
    return [train[i] for i in keep]


def active_learning(
    teacher: LoadedModel,
    train: Sequence[ase.Atoms],
    tests: Mapping[str, Sequence[ase.Atoms]],
    config: ActiveConfig,
    student: ACEStudentConfig,
    out,
    e0s: Mapping[int, float] | None = None,
    label_batch_size: int = 8,
    progress: bool = False,
) -> tuple[list[ase.Atoms], list[dict]]:
    """Run (or resume) the loop in `out`; returns (the final training set, the rounds' records).

    Args:
        teacher: labels the chosen frames.
        train: teacher-labelled training structures (REF_energy, REF_forces), MD frames
            tagged as `sample_plan` tags them; their trajectories' first frames start the
            student's MD.
        tests: {name: labelled structures} each round's student is judged on.
        config: the loop's settings.
        student: the ACE student fitted each round.
        out: the loop's folder (see the module docstring); complete rounds are read back.
        e0s: isolated-atom energies in eV by atomic number (the teacher's).
        label_batch_size: structures per labelling batch.
        progress: progress bars of the MD and the labelling.

    Raises LabellingError when the teacher fails on a chosen frame (the labels before it
    are kept in round_NNN/labelled.xyz, and a resumed loop goes on after them), DataError
    when a structure holds an element the student's basis or the teacher lacks.
    """
    from jaxtl.distill.ace import check_student_elements

    elements = list(student.elements) or sorted({int(z) for a in train for z in a.numbers})
    for name, frames in tests.items():
        check_student_elements(frames, elements, f"test set {name}")
    # every round's basis covers the training split's elements, which a small subset may lack
    student = dataclasses.replace(student, elements=tuple(elements))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    initial = _initial(train, config, out)
    starts = training_starts(train)
    labelled: list[ase.Atoms] = []
    records: list[dict] = []
    for r in range(config.rounds):
        folder = out / f"round_{r:03d}"
        done = folder / ROUND_FILE
        if done.exists():
            records.append(json.loads(done.read_text()))
            labelled.extend(_labelled(folder))
            continue
        round_train = initial + labelled
        record = _round(
            teacher, round_train, tests, starts, config, student, folder, r, e0s, label_batch_size, progress
        )
        labelled.extend(_labelled(folder))
        records.append(record)
        _write_json(done, record)
        _write_json(out / ROUNDS_FILE, {"config": config.to_dict(), "rounds": records})
    return initial + labelled, records


def _labelled(folder: Path) -> list[ase.Atoms]:
    path = folder / "labelled.xyz"
    return ase.io.read(path, index=":") if path.exists() else []


def _initial(train: Sequence[ase.Atoms], config: ActiveConfig, out: Path) -> list[ase.Atoms]:
    """The initial subset, as out/initial.xyz holds it (written the first time)."""
    path = out / INITIAL_FILE
    if path.exists():
        return ase.io.read(path, index=":")
    subset = initial_subset(train, config.initial, config.seed)
    write_frames(path, subset)
    return ase.io.read(path, index=":")


def _round(teacher, train, tests, starts, config: ActiveConfig, student, folder: Path, r: int, e0s, batch, progress):
    """One round in `folder` (steps whose files exist are read back); returns its record."""
    from jaxtl.distill.students import calculator_errors

    t0 = time.perf_counter()
    calc, members = _fitted(train, student, folder / "student", config.committee, e0s)
    record: dict = {"round": r, "n_train": len(train), "teacher_labels": len(train)}
    record["errors"] = {name: calculator_errors(calc, frames) for name, frames in tests.items()}
    record["score_vs_error"] = _score_check(calc, members, tests, config.check_structures)
    fit_s = time.perf_counter() - t0
    candidates, record["md"] = _candidates(calc, starts, config, folder, r, progress)
    chosen = _chosen(candidates, members, config, folder)
    t1 = time.perf_counter()
    record["n_candidates"] = len(candidates)
    record["chosen"] = [
        {k: _plain(a.info.get(k)) for k in ("sample_start", "md_step", "score", "blow_up")} for a in chosen
    ]
    _label(teacher, chosen, folder, batch, progress)
    record["wall_s"] = {"fit_and_errors": fit_s, "md_and_scores": t1 - t0 - fit_s, "labels": time.perf_counter() - t1}
    best = record["errors"]
    log.info(
        "active round %d: %d labels, forces RMSE %s meV/A; %d candidates, %d chosen",
        r,
        len(train),
        ", ".join(f"{name} {e.get('forces_rmse', float('nan')):.1f}" for name, e in best.items()),
        len(candidates),
        len(chosen),
    )
    return record


def _fitted(train, student: ACEStudentConfig, folder: Path, committee: int, e0s):
    """(the student's calculator, its committee's calculators), fitted into `folder` unless
    a resumed round's fit is there."""
    from jaxtl.distill.ace import MODEL_FILE, STUDENT_FILE, committee_files, fit_ace_student
    from jaxtl.distill.ace_calculator import CompiledACECalculator
    from jaxtl.distill.students import load_calculator

    if not ((folder / MODEL_FILE).exists() and (folder / STUDENT_FILE).exists()):
        fit_ace_student(train, student, folder, e0s=e0s, committee=committee)
    files = committee_files(folder)
    if len(files) != committee:
        raise ValueError(f"{folder}: {len(files)} committee members, the loop asks for {committee}")
    return load_calculator(folder), [CompiledACECalculator(f, source=f"committee {f}") for f in files]


def _score_check(calc, members, tests, n: int) -> dict:
    """Per test set: the rank correlation of the committee's score with the student's real
    error (the largest per-atom force error, eV/A) on up to `n` evenly spaced structures."""
    out = {}
    for name, frames in tests.items():
        if not frames:
            continue
        keep = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int))
        scores, errors = [], []
        for i in keep:
            atoms = frames[i]
            scores.append(force_disagreement(committee_forces(members, atoms)))
            [forces] = committee_forces([calc], atoms)
            errors.append(float(np.linalg.norm(forces - atoms.arrays["REF_forces"], axis=1).max()))
        out[name] = {
            "n": len(keep),
            "spearman": rank_correlation(scores, errors),
            "score_median": float(np.median(scores)),
            "error_median": float(np.median(errors)),
        }
    return out


def _candidates(calc, starts, config: ActiveConfig, folder: Path, r: int, progress: bool):
    """(the student MD frames, the MD record), from round_NNN/candidates.xyz when there."""
    from jaxtl.md.ase_md import run_ase_md
    from jaxtl.md.simulate import drop_labels

    path, record_path = folder / "candidates.xyz", folder / "md.json"
    if path.exists() and record_path.exists():
        return ase.io.read(path, index=":"), json.loads(record_path.read_text())
    frames, runs = [], []
    for i, start in enumerate(starts):
        md = dataclasses.replace(config.md, seed=config.md.seed + r * len(starts) + i).md_config(0)
        result = run_ase_md(calc, start, md, progress=progress)
        kept = [drop_labels(f) for f in result.frames if int(f.info.get("md_step", 0)) > 0]
        for k, f in enumerate(kept):
            f.info.update(sample_start=int(start.info.get("sample_start", i)), md_trajectory=i, active_round=r)
            f.info["blow_up"] = bool(result.error) and k >= len(kept) - config.blow_up_frames
        frames.extend(kept)
        runs.append({"start": i, "steps_done": result.steps_done, "error": result.error, "n_frames": len(kept)})
        if result.error:
            log.warning("active round %d, start %d: the student's MD %s", r, i, result.error)
    write_frames(path, frames)
    _write_json(record_path, runs)
    return ase.io.read(path, index=":"), runs


def _chosen(candidates, members, config: ActiveConfig, folder: Path) -> list[ase.Atoms]:
    """The frames to label: scored by the committee and selected (round_NNN/chosen.xyz when there)."""
    path = folder / "chosen.xyz"
    if path.exists():
        return ase.io.read(path, index=":")
    for atoms in candidates:
        try:
            score = force_disagreement(committee_forces(members, atoms))
        except FloatingPointError:  # the committee itself fails there: a frame to learn from
            score = np.inf
        atoms.info["score"] = np.inf if atoms.info.get("blow_up") else score
    picks = select_frames(
        [a.info["score"] for a in candidates],
        [a.info["md_trajectory"] for a in candidates],
        [a.info["md_step"] for a in candidates],
        config.frames,
        config.min_separation,
    )
    chosen = [candidates[i] for i in picks]
    for atoms in chosen:
        atoms.info["split"] = TRAIN
    write_frames(folder / "candidates.xyz", candidates)  # with their scores
    write_frames(path, chosen)
    return ase.io.read(path, index=":")


def _label(teacher, chosen, folder: Path, batch: int, progress: bool) -> None:
    """Teacher labels of the chosen frames into round_NNN/labelled.xyz, after those an
    interrupted round wrote."""
    path = folder / "labelled.xyz"
    done = labelled_so_far(path, chosen, folder / "chosen.xyz") if path.exists() else 0
    if done == len(chosen):
        return
    try:
        label_structures(
            teacher,
            chosen[done:],
            path,
            batch,
            progress,
            source=str(folder / "chosen.xyz"),
            append=done > 0,
            first_index=done,
        )
    except LabellingError as err:
        raise LabellingError(
            f"active learning, {folder.name}: {err} (labels of earlier rounds are kept in their folders; "
            "resume to label the rest)",
            err.labelled,
        ) from err


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    tmp.replace(path)


def _plain(value):
    """Python's own number or bool for a numpy scalar (what extxyz reads back)."""
    return value.item() if isinstance(value, np.generic) else value


def _json_default(value):
    return _plain(value) if isinstance(value, np.generic) else str(value)
