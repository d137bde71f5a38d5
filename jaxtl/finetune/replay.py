"""Pseudolabelled replay: keep fitting the foundation while fitting the new data.

The foundation's training corpus is usually not at hand, so the replay set is made
from structures of the elements at hand -- the user's training structures rattled
(`size` copies) and/or given files -- labelled by the frozen foundation
(`jaxtl.distill.labelling`). Those structures join the training set with a
per-structure weight (`Configuration.weight`, which the loss multiplies in) and
config_type "replay", so the training metrics show the replay error apart.

The foundation's energies are on its own per-element reference (its E0s); the
fine-tuned model gets refitted E0s. Replay energies are moved to the new reference,
E - sum_i E0_foundation(z_i) + sum_i E0_new(z_i), so that replay asks for the
foundation's interaction energy, not its reference. Forces need no change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import ase
import ase.io
import numpy as np

from jaxtl.graph.io import Configuration, DataError, DataKeys, check_elements, configuration_from_atoms

REPLAY_TYPE = "replay"


@dataclasses.dataclass(frozen=True)
class Replay:
    """A pseudolabelled replay set.

    Attributes:
        size: rattled copies of the training structures (None: as many as there
            are training structures when no file is given, else none).
        weight: per-structure loss weight of the replay structures (1: as the new data).
        files: extra structure files (any ASE format) to label and replay.
        rattle: standard deviation of the Gaussian displacement of the copies (A).
        seed: which structures are copied and how they are rattled.
    """

    size: int | None = None
    weight: float = 1.0
    files: tuple[str, ...] = ()
    rattle: float = 0.05
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "files", tuple(str(f) for f in self.files))
        if self.size is not None and self.size < 0:
            raise ValueError(f"replay size must be >= 0, got {self.size}")
        if self.weight < 0:
            raise ValueError(f"replay weight must be >= 0, got {self.weight}")
        if self.rattle < 0:
            raise ValueError(f"replay rattle must be >= 0 A, got {self.rattle}")

    def n_copies(self, n_train: int) -> int:
        if self.size is not None:
            return self.size
        return 0 if self.files else n_train

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def to_atoms(config: Configuration) -> ase.Atoms:
    """The structure of a Configuration, without labels."""
    return ase.Atoms(numbers=config.atomic_numbers, positions=config.positions, cell=config.cell, pbc=config.pbc)


def rattled_copies(configs: Sequence[Configuration], n: int, rattle: float, seed: int = 0) -> list[ase.Atoms]:
    """n copies of `configs` (a random order, cycled), each displaced by N(0, rattle^2) per coordinate (A)."""
    if n == 0:
        return []
    if not configs:
        raise ValueError("no training structures to rattle for the replay set")
    rng = np.random.default_rng([seed, 0x5E9])
    order = np.concatenate([rng.permutation(len(configs)) for _ in range(-(-n // len(configs)))])[:n]
    out = []
    for i in order:
        atoms = to_atoms(configs[int(i)])
        atoms.positions = atoms.positions + rng.normal(0.0, rattle, atoms.positions.shape)
        out.append(atoms)
    return out


def replay_structures(
    replay: Replay, configs: Sequence[Configuration], atomic_numbers: Sequence[int]
) -> list[tuple[ase.Atoms, str]]:
    """(structure, source) of the replay set, unlabelled; every element checked against the foundation's.

    Raises:
        DataError: a replay structure holds an element the foundation does not know.
    """
    out = [
        (a, "replay (rattled training structure)")
        for a in rattled_copies(configs, replay.n_copies(len(configs)), replay.rattle, replay.seed)
    ]
    for path in replay.files:
        frames = ase.io.read(path, ":")
        for i, atoms in enumerate(frames):
            config = configuration_from_atoms(atoms, source=str(path), index=i, read_labels=False, min_distance=None)
            try:
                check_elements([config], atomic_numbers)
            except DataError as err:
                raise DataError(f"replay set: {err}; the foundation cannot label it") from None
            out.append((atoms, str(path)))
    return out


def _e0_per_structure(numbers: np.ndarray, e0: np.ndarray, atomic_numbers: Sequence[int]) -> float:
    index = {int(z): k for k, z in enumerate(atomic_numbers)}
    return float(sum(e0[index[int(z)]] for z in numbers))


def pseudolabel(
    teacher,
    structures: Sequence[tuple[ase.Atoms, str]],
    replay: Replay,
    head: str,
    e0_teacher: np.ndarray,
    e0_new: np.ndarray,
    batch_size: int = 8,
) -> list[Configuration]:
    """Replay configurations: `structures` labelled by `teacher` (a LoadedModel), energies
    moved from the teacher's E0s to `e0_new` ([n_elements] eV each), weight `replay.weight`,
    config_type "replay"."""
    from jaxtl.distill.labelling import label_structures

    if not structures:
        return []
    atoms = [a for a, _ in structures]
    labelled, _ = label_structures(teacher, atoms, batch_size=batch_size, source="replay set")
    z_model = teacher.config.atomic_numbers
    configs = []
    for i, (a, (_, source)) in enumerate(zip(labelled, structures)):
        c = configuration_from_atoms(a, DataKeys(), source=source, index=i, head=head, min_distance=None)
        shift = _e0_per_structure(c.atomic_numbers, e0_new, z_model) - _e0_per_structure(
            c.atomic_numbers, e0_teacher, z_model
        )
        configs.append(
            dataclasses.replace(c, energy=c.energy + shift, weight=replay.weight, config_type=REPLAY_TYPE, head=head)
        )
    return configs


def describe_replay(replay: Replay, structures: Sequence[tuple[ase.Atoms, str]]) -> str:
    """One line on what `replay_structures` gave."""
    n_files = sum(1 for _, source in structures if source in replay.files)
    parts = [f"{len(structures) - n_files} rattled copies of the training structures ({replay.rattle} A)"]
    if replay.files:
        parts.append(f"{n_files} structures from {', '.join(Path(p).name for p in replay.files)}")
    return f"replay: {' + '.join(parts)}, labelled by the frozen foundation, loss weight {replay.weight} per structure"
