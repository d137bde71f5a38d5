"""A distillation run's labelled set: starts read, MD-sampled with the teacher, labelled.

Each step leaves a file in the run folder, written before the next step starts, so a
resumed run takes up where the last one stopped:

- `sampled.xyz`: the structures to label (the starts as given, or the MD frames of a
  `SamplingPlan`), and `sampling.json`: how they were drawn (starts, plan, every run,
  counts, teacher), what was labelled, and the labelling's timings;
- `labelled.xyz`: the teacher's labels, appended batch by batch; a run stopped while
  labelling keeps the frames written, and a resumed one labels only the rest.

The labelled set is always read back from `labelled.xyz`, so an interrupted and resumed
run trains on exactly the numbers an uninterrupted one does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import ase
import ase.io

from jaxtl.api import LoadedModel
from jaxtl.distill.config import DistillConfig
from jaxtl.distill.labelling import LabellingError, label_structures, labelled_so_far, write_frames
from jaxtl.distill.sampling import sample_plan
from jaxtl.graph.io import check_elements, configuration_from_atoms

log = logging.getLogger("jaxtl.distill")

SAMPLED_FILE = "sampled.xyz"
RECORD_FILE = "sampling.json"
LABELLED_FILE = "labelled.xyz"
# what sampling.json adds to the sampling plan's own record
RECORD_EXTRAS = ("starts", "teacher", "labelled_file", "labelled", "labelling", "labelling_error", "sampling_s")


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


def labelled_set(
    config: DistillConfig, teacher: LoadedModel, out: Path, report: dict, resume: bool, progress: bool
) -> list[ase.Atoms]:
    """The teacher-labelled structures of the run (`config.data.labelled_file`, or sampled and
    labelled into `out`); what each step did goes into `report`."""
    data = config.data
    if data.labelled_file is not None:
        report["labelled_file"] = data.labelled_file
        return ase.io.read(data.labelled_file, index=":")
    candidates, record = sampled_set(config, teacher, out, resume, progress)
    report["sampling_s"] = record.get("sampling_s")
    if config.sampling is not None:
        report["sampling"] = {k: v for k, v in record.items() if k not in RECORD_EXTRAS}
    record = label_rest(teacher, candidates, record, out, data.label_batch_size, resume, progress)
    report["labelling"] = record.get("labelling")
    return ase.io.read(out / LABELLED_FILE, index=":")


def sampled_set(
    config: DistillConfig, teacher: LoadedModel, out: Path, resume: bool, progress: bool
) -> tuple[list[ase.Atoms], dict]:
    """(the structures to label, the sampling record), as `out/sampled.xyz` and
    `out/sampling.json` hold them; a resumed run whose sampling finished reads them back."""
    sampled, record_file = out / SAMPLED_FILE, out / RECORD_FILE
    if resume and sampled.exists() and record_file.exists():
        log.info("resuming %s: sampling done (%s)", out, sampled)
        return ase.io.read(sampled, index=":"), json.loads(record_file.read_text())
    starts = read_structures(config.data.starts)
    check_elements(
        [
            configuration_from_atoms(
                a, source=str(a.info.get("source", "data.starts")), index=i, min_distance=None, read_labels=False
            )
            for i, a in enumerate(starts)
        ],
        teacher.config.atomic_numbers,
    )
    t0 = time.perf_counter()
    if config.sampling is not None:
        candidates, record = sample_plan(teacher, starts, config.sampling, progress=progress)
    else:
        candidates, record = starts, {"starts": None, "plan": None, "note": "structures labelled as given"}
        for i, a in enumerate(candidates):
            a.info.setdefault("sample_start", i)
    record.update(
        teacher=config.teacher.model,
        labelled_file=LABELLED_FILE,
        labelled=None,
        sampling_s=time.perf_counter() - t0,
        starts=record.get("starts")
        or [
            {"index": i, "formula": a.get_chemical_formula(), "source": str(a.info.get("source", f"start {i}"))}
            for i, a in enumerate(starts)
        ],
    )
    write_frames(sampled, candidates)
    write_record(out, record)  # before labelling: a failure there keeps how the set was drawn
    return ase.io.read(sampled, index=":"), record


def label_rest(
    teacher: LoadedModel,
    candidates: list[ase.Atoms],
    record: dict,
    out: Path,
    batch_size: int,
    resume: bool,
    progress: bool,
) -> dict:
    """Label the candidates `out/labelled.xyz` does not hold yet (all of them unless
    resuming); returns the updated sampling record (also written)."""
    path = out / LABELLED_FILE
    done = labelled_so_far(path, candidates, out / SAMPLED_FILE) if resume and path.exists() else 0
    if done == len(candidates) and record.get("labelled") == done:
        log.info("resuming %s: labelling done (%d structures)", out, done)
        return record
    if done:
        log.info("resuming %s: %d of %d structures labelled; labelling the rest", out, done, len(candidates))
    try:
        _, stats = label_structures(
            teacher,
            candidates[done:],
            path,
            batch_size,
            progress,
            source=str(out / SAMPLED_FILE),
            append=done > 0,
            first_index=done,
        )
    except LabellingError as err:
        write_record(out, dict(record, labelled=done + len(err.labelled), labelling_error=str(err)))
        raise
    record = {k: v for k, v in record.items() if k != "labelling_error"}
    record.update(labelled=len(candidates), labelling=dict(stats.to_dict(), resumed_after=done))
    write_record(out, record)
    return record


def write_record(out: Path, record: dict) -> None:
    """out/sampling.json: starts, plan, every run (temperature, seed, steps, stride, rattles,
    frames), counts per split and the teacher: what regenerates labelled.xyz."""
    tmp = out / f".{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(out / RECORD_FILE)
