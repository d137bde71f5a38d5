"""Teacher labels for many structures: padded, jit-compiled batches, written as extended XYZ.

Each structure gets `REF_energy` (eV), `REF_forces` (eV/A) and, for cells periodic in
all three directions, `REF_stress` (eV/A^3, 3x3, ASE sign), so the file can be used by
`jaxtl train`, mace-torch or anything that reads mace-style keys. Labels a structure
already carried (DFT, say) are kept under `DFT_energy`, `DFT_forces`, `DFT_stress`.

Batches are padded to capacities that only grow, so a run compiles once or twice.
Batches are appended to the output file as they are done: if the teacher fails on a
structure (NaN), the error names it and the file keeps everything labelled before it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np

from jaxtl.api import LoadedModel
from jaxtl.graph.batching import Budget, graph_from_configuration, pad_to_capacity
from jaxtl.graph.io import DataError, check_elements, configuration_from_atoms

log = logging.getLogger("jaxtl.distill")

DFT_KEYS = {"energy": "DFT_energy", "forces": "DFT_forces", "stress": "DFT_stress"}


class LabellingError(RuntimeError):
    """The teacher gave non-finite labels; `.labelled` holds the structures done before."""

    def __init__(self, message: str, labelled: list):
        super().__init__(message)
        self.labelled = labelled


@dataclasses.dataclass
class LabelStats:
    """n_structures labelled, wall_s in total, compile_s of the first batch, and
    structures_per_s after it (host neighbour lists and padding included)."""

    n_structures: int
    n_batches: int
    wall_s: float
    compile_s: float
    structures_per_s: float
    n_compilations: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _periodic(atoms: ase.Atoms) -> bool:
    return bool(np.all(atoms.pbc)) and atoms.cell.rank == 3


def _stash_existing_labels(atoms: ase.Atoms, config) -> None:
    """Move labels the input carried (DFT) to DFT_* keys, and drop the old calculator."""
    for name in ("energy", "stress"):
        value = getattr(config, name)
        if value is not None:
            atoms.info[DFT_KEYS[name]] = value
    if config.forces is not None:
        atoms.arrays[DFT_KEYS["forces"]] = np.array(config.forces)
    for key in ("REF_energy", "REF_stress", "REF_virials", "energy", "stress", "free_energy"):
        atoms.info.pop(key, None)
    for key in ("REF_forces", "forces"):
        if key in atoms.arrays:
            del atoms.arrays[key]
    atoms.calc = None


def label_structures(
    teacher: LoadedModel,
    structures: Sequence[ase.Atoms],
    out_file: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = False,
    source: str = "<structures>",
    append: bool = False,
    first_index: int = 0,
) -> tuple[list[ase.Atoms], LabelStats]:
    """Label `structures` with the teacher.

    Args:
        teacher: the model that labels.
        structures: ASE Atoms (not modified).
        out_file: extended XYZ written batch by batch (replaced if it exists, unless `append`).
        batch_size: structures per padded batch.
        source: name used in error messages ("<source>, frame i").
        append: add to `out_file` (a resumed run labelling the rest of its structures).
        first_index: the frame number of structures[0] in `source` (for error messages).

    Returns (labelled copies, LabelStats).

    Raises:
        DataError: a structure holds an element the teacher does not know (names it).
        LabellingError: the teacher gave NaN/inf for a structure (names it); the
            structures before it are labelled and written.
    """
    r_max = float(teacher.config.r_max)
    dtype = np.float64 if teacher.config.dtype == "float64" else np.float32
    configs = [
        configuration_from_atoms(a, source=source, index=first_index + i, min_distance=None)
        for i, a in enumerate(structures)
    ]
    check_elements(configs, teacher.config.atomic_numbers)
    stress = any(_periodic(a) for a in structures)
    if out_file is not None:
        out_file = os.fspath(out_file)
        os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
        if not append:
            open(out_file, "w").close()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(structures), unit="structure", desc="labelling", disable=None)  # None: only on a terminal
    compilations = teacher.n_compilations
    budget: Budget | None = None
    labelled: list[ase.Atoms] = []
    start = time.perf_counter()
    first_batch_s = 0.0
    n_batches = 0
    for lo in range(0, len(configs), batch_size):
        part = configs[lo : lo + batch_size]
        items = [graph_from_configuration(c, r_max) for c in part]
        batch, budget = pad_to_capacity(items, r_max, at_least=budget, dtype=dtype)
        out = teacher.predict(batch.graph, compute_stress=stress)
        energy = np.asarray(out["energy"], np.float64)
        forces = np.asarray(out["forces"], np.float64)
        stresses = np.asarray(out["stress"], np.float64) if stress else None
        done = []
        offset = 0
        for g, config in enumerate(part):
            n = config.n_atoms
            atoms = structures[config.index - first_index].copy()
            f = forces[offset : offset + n]
            offset += n
            if not (np.isfinite(energy[g]) and np.all(np.isfinite(f))):
                _write(out_file, done)
                labelled.extend(done)
                raise LabellingError(
                    f"{config.where}: the teacher gave NaN/inf energy or forces (atoms too close?); "
                    f"{len(labelled)} structures labelled before it were kept"
                    + (f" in {out_file}" if out_file else ""),
                    labelled,
                )
            _stash_existing_labels(atoms, config)
            atoms.info["REF_energy"] = float(energy[g])
            atoms.arrays["REF_forces"] = f
            if stress and _periodic(atoms):
                atoms.info["REF_stress"] = stresses[g].reshape(9)
            done.append(atoms)
        _write(out_file, done)
        labelled.extend(done)
        n_batches += 1
        if n_batches == 1:
            first_batch_s = time.perf_counter() - start
        if bar is not None:
            bar.update(len(part))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - start
    after = len(labelled) - min(batch_size, len(labelled))
    rate = after / (wall - first_batch_s) if after and wall > first_batch_s else len(labelled) / max(wall, 1e-9)
    stats = LabelStats(len(labelled), n_batches, wall, first_batch_s, rate, teacher.n_compilations - compilations)
    log.info("labelled %d structures in %.1f s (%.1f structures/s after the first batch)", len(labelled), wall, rate)
    return labelled, stats


def labelled_so_far(path: Path, candidates: Sequence[ase.Atoms], sampled: Path) -> int:
    """How many of `candidates` an interrupted run's `path` holds labels of; the file is cut
    to those frames (a frame the interruption cut short is dropped)."""
    text = path.read_text()
    frames, cut = [], False
    try:
        for atoms in ase.io.iread(path, format="extxyz"):
            frames.append(atoms)
    except (OSError, ValueError, IndexError) as err:  # the last frame cut short
        log.warning("%s: frame %d is incomplete (%s); labelling it again", path, len(frames), err)
        cut = True
    if frames and not cut and not text.endswith("\n"):
        log.warning("%s: frame %d may be cut short; labelling it again", path, len(frames) - 1)
        frames.pop()  # it parsed, but its last number may be cut short
    for i, atoms in enumerate(frames):
        expected = candidates[i] if i < len(candidates) else None
        if (
            expected is None
            or len(atoms) != len(expected)
            or not np.array_equal(atoms.numbers, expected.numbers)
            or not np.allclose(atoms.positions, expected.positions, atol=1e-6)
        ):
            raise ValueError(
                f"{path}, frame {i}: not frame {i} of {sampled}, so these labels belong to another run; "
                f"remove {path} to label again"
            )
    if frames:
        write_frames(path, frames)  # without a cut tail, so labels of the rest are appended after whole frames
    return len(frames)


def write_frames(path: Path, frames: Sequence[ase.Atoms]) -> None:
    """Extended XYZ written whole or not at all (a stopped run leaves no half file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    ase.io.write(tmp, list(frames), format="extxyz")
    tmp.replace(path)


def _write(path, frames) -> None:
    if path is not None and frames:
        ase.io.write(path, frames, format="extxyz", append=True)


__all__ = [
    "DFT_KEYS",
    "DataError",
    "LabelStats",
    "LabellingError",
    "label_structures",
    "labelled_so_far",
    "write_frames",
]
