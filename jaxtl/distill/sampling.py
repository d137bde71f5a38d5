"""Structures to label: Langevin MD with the teacher from starting structures, every k-th
frame kept, optionally with rattled copies."""

from __future__ import annotations

import dataclasses
import logging
from typing import Sequence

import ase
import numpy as np

from jaxtl.api import LoadedModel
from jaxtl.md.simulate import MDConfig, MDEngine, drop_labels, fixed_atoms

log = logging.getLogger("jaxtl.distill")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How structures are sampled with the teacher.

    Attributes:
        md_steps: Langevin steps per starting structure (0: no MD, the starts only).
        temperature: in K.
        dt: time step in fs.
        friction: Langevin friction in 1/fs.
        keep_every: keep every k-th MD frame (the start, frame 0, is kept too).
        n_rattled: rattled copies added per kept frame.
        rattle_std: standard deviation of the rattle in A (fixed atoms are not moved).
        skin, check_every, min_distance: MD settings (see `MDConfig`).
        seed: seed of the MD (start i uses seed + i) and the rattles.
    """

    md_steps: int = 1000
    temperature: float = 300.0
    dt: float = 1.0
    friction: float = 0.01
    keep_every: int = 50
    n_rattled: int = 0
    rattle_std: float = 0.05
    skin: float = 1.0
    check_every: int = 25
    min_distance: float = 0.5
    seed: int = 0

    def md_config(self, index: int) -> MDConfig:
        return MDConfig(steps=self.md_steps, dt=self.dt, ensemble="langevin", temperature=self.temperature,
                        friction=self.friction, skin=self.skin, check_every=self.check_every,
                        save_every=self.keep_every, min_distance=self.min_distance, seed=self.seed + index)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def rattled_copies(atoms: ase.Atoms, n: int, std: float, rng: np.random.Generator,
                   min_distance: float = 0.5, max_tries: int = 20) -> list[ase.Atoms]:
    """`n` copies with Gaussian displacements (A) of the mobile atoms; copies with atoms
    closer than `min_distance` are redrawn."""
    mobile = ~fixed_atoms(atoms)
    out = []
    for _ in range(n):
        for _ in range(max_tries):
            copy = atoms.copy()
            copy.positions[mobile] += rng.normal(0.0, std, (int(mobile.sum()), 3))
            if len(copy) < 2 or _min_distance(copy) >= min_distance:
                break
        copy.info["rattled"] = True
        out.append(copy)
    return out


def _keep_calculator_labels(start: ase.Atoms, frame0: ase.Atoms) -> None:
    """Labels held by the start's calculator (extxyz `energy=`, `forces`) onto frame 0 as REF_*."""
    results = getattr(start.calc, "results", None) or {}
    if "energy" in results and "REF_energy" not in frame0.info:
        frame0.info["REF_energy"] = float(results["energy"])
    if "forces" in results and "REF_forces" not in frame0.arrays:
        frame0.arrays["REF_forces"] = np.array(results["forces"])


def _min_distance(atoms: ase.Atoms) -> float:
    from jaxtl.graph.neighbours import neighbour_list

    s, r, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, 2.0)
    if len(s) == 0:
        return np.inf
    return float(np.linalg.norm(atoms.positions[r] - atoms.positions[s] + shifts @ atoms.cell.array, axis=1).min())


def sample_structures(teacher: LoadedModel, starts: Sequence[ase.Atoms], config: SamplingConfig = SamplingConfig(),
                      progress: bool = True, engine: MDEngine | None = None) -> tuple[list[ase.Atoms], dict]:
    """Langevin MD with the teacher from each start; returns (structures, report).

    The MD energies are dropped (labelling redoes them in batches, with stress); labels
    a start carried (DFT, say) stay on its unmoved frame 0 only, and labelling keeps them
    as DFT_* keys. An MD run that explodes keeps its frames so far and is
    reported under `report["md_errors"]`; sampling carries on with the next start.
    """
    engine = engine or MDEngine(teacher)
    rng = np.random.default_rng(config.seed)
    bar = None
    if progress and config.md_steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.md_steps * len(starts), unit="step", desc="sampling MD")
    structures, errors, steps, wall = [], [], 0, 0.0
    for i, start in enumerate(starts):
        if config.md_steps:
            result = engine.run(start, config.md_config(i), progress=bar if bar is not None else False)
            frames = result.frames
            steps += result.steps_done
            wall += result.wall_s
            if result.error:
                errors.append(f"start {i}: {result.error}")
        else:
            frames = [start.copy()]
        _keep_calculator_labels(start, frames[0])
        for frame in frames:
            frame.calc = None
            frame.info["sample_start"] = i
            structures.append(frame)
            for copy in rattled_copies(frame, config.n_rattled, config.rattle_std, rng, config.min_distance):
                structures.append(drop_labels(copy))
    if bar is not None:
        bar.close()
    report = {"n_starts": len(starts), "n_structures": len(structures), "md_steps": steps,
              "md_steps_per_s": steps / wall if wall else None, "md_errors": errors,
              "md_compilations": engine.n_compilations, "settings": config.to_dict()}
    log.info("sampled %d structures from %d starts (%d MD steps)", len(structures), len(starts), steps)
    return structures, report
