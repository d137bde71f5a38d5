"""Reading structure files into `Configuration`s (host side, numpy).

Anything `ase.io.read` reads works; extended XYZ is the usual format. An ASE database
(`.db`) is read row by row with its key-value pairs in `atoms.info` and its `data`
entries in `atoms.info` (or `atoms.arrays` when they have one row per atom), so the
same keys find the labels. Labels are looked up under the keys of a `DataKeys`
(mace-torch defaults: `REF_energy`, ...) and fall back to the ASE calculator results
that ASE attaches when a file stores plain `energy=`/`forces`/`stress` (ASE >= 3.23
moves those into a SinglePointCalculator).

As in mace-torch, a frame may carry only some labels: the missing ones are None with
weight 0, so they add nothing to a loss. Per-frame weights are read from the info keys
`config_weight` and `config_{energy,forces,stress,virials}_weight`, times the weight of
the frame's `config_type` (mace's `--config_type_weights`).

Every error is a `DataError` that names the file and the frame index.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence

import ase
import ase.io
import numpy as np
from ase.data import chemical_symbols

from jaxtl.graph.neighbours import neighbour_list

LABELS = ("energy", "forces", "stress", "virials")
ISOLATED_ATOM = "IsolatedAtom"


class DataError(ValueError):
    """A structure file, or one frame of it, cannot be used."""


@dataclasses.dataclass(frozen=True)
class DataKeys:
    """Where labels live in `atoms.info` / `atoms.arrays` (mace-torch names)."""

    energy: str = "REF_energy"
    forces: str = "REF_forces"
    stress: str = "REF_stress"
    virials: str = "REF_virials"
    config_type: str = "config_type"
    weight: str = "config_weight"
    energy_weight: str = "config_energy_weight"
    forces_weight: str = "config_forces_weight"
    stress_weight: str = "config_stress_weight"
    virials_weight: str = "config_virials_weight"
    head: str = "head"


@dataclasses.dataclass(frozen=True, eq=False)
class Configuration:
    """One structure with its labels; missing labels are None with weight 0.

    Attributes:
        atomic_numbers: [n_atoms] int.
        positions: [n_atoms, 3] in A.
        cell: [3, 3] in A, rows are lattice vectors (zero when there is none).
        pbc: three booleans.
        energy: total energy in eV, or None.
        forces: [n_atoms, 3] in eV/A, or None.
        stress: [3, 3] in eV/A^3 (ASE sign), or None.
        virials: [3, 3] in eV, or None.
        weight: config_weight x config_type weight.
        energy_weight, forces_weight, stress_weight, virials_weight: per-label weights
            (the file's config_*_weight, 0 when the label is missing).
        config_type: str ("Default" when absent).
        head: name of the model head this structure trains.
        source: the file it came from; index: its frame index there.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: tuple[bool, bool, bool]
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    virials: np.ndarray | None = None
    weight: float = 1.0
    energy_weight: float = 0.0
    forces_weight: float = 0.0
    stress_weight: float = 0.0
    virials_weight: float = 0.0
    config_type: str = "Default"
    head: str = "Default"
    source: str = "<memory>"
    index: int = 0

    @property
    def n_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def where(self) -> str:
        return f"{self.source}, frame {self.index}"


def to_matrix(value, n_atoms: int | None = None) -> np.ndarray:
    """A stress or virial as [3, 3] from 6-Voigt (xx yy zz yz xz xy), 9 values or 3x3."""
    flat = np.asarray(value, dtype=np.float64).reshape(-1)
    if flat.size == 9:
        return flat.reshape(3, 3)
    if flat.size == 6:
        xx, yy, zz, yz, xz, xy = flat
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"expected 6 (Voigt), 9 or 3x3 values, got {flat.size}")


def _calc_result(atoms: ase.Atoms, name: str):
    calc = atoms.calc
    if calc is None:
        return None
    return getattr(calc, "results", {}).get(name)


def _lookup(atoms: ase.Atoms, keys: DataKeys, name: str):
    """A label from info/arrays under its key, else from the calculator results."""
    key = getattr(keys, name)
    store = atoms.arrays if name == "forces" else atoms.info
    if key in store and store[key] is not None:
        return store[key]
    return _calc_result(atoms, name)


def _geometry(atoms: ase.Atoms, where: str) -> tuple[np.ndarray, np.ndarray, tuple[bool, ...]]:
    """(positions [n_atoms, 3] A, cell [3, 3] A, pbc), finite and with a cell that spans
    the periodic directions; else `DataError` naming `where`."""
    positions = np.array(atoms.positions, dtype=np.float64)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    pbc = tuple(bool(p) for p in atoms.pbc)
    if not np.all(np.isfinite(positions)):
        bad = np.flatnonzero(~np.all(np.isfinite(positions), axis=1))
        raise DataError(f"{where}: positions of atoms {bad[:10].tolist()} are NaN or inf")
    if not np.all(np.isfinite(cell)):
        raise DataError(f"{where}: cell is NaN or inf")
    if any(pbc) and np.linalg.matrix_rank(cell[list(pbc)], tol=1e-8) < sum(pbc):
        raise DataError(f"{where}: pbc={pbc} but the cell {cell.tolist()} is degenerate")
    return positions, cell, pbc


def _labels(
    atoms: ase.Atoms, keys: DataKeys, require: Sequence[str], where: str, read: bool = True
) -> dict[str, object]:
    """{label: value or None} of `LABELS` (energy eV, forces [n_atoms, 3] eV/A, stress and
    virials [3, 3]), each finite, those in `require` present; else `DataError` naming the
    label and `where`. `read=False`: no labels (all None)."""
    labels: dict[str, object] = {}
    for name in LABELS:
        raw = _lookup(atoms, keys, name) if read else None
        if raw is None:
            if name in require:
                raise DataError(
                    f"{where}: required label '{name}' is missing (no '{getattr(keys, name)}' "
                    f"in the frame and no calculator result)"
                )
            labels[name] = None
            continue
        try:
            if name == "energy":
                value = float(np.asarray(raw, dtype=np.float64).reshape(()))
            elif name == "forces":
                value = np.array(raw, dtype=np.float64).reshape(len(atoms), 3)
            else:
                value = to_matrix(raw)
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: label '{name}' cannot be read: {err}") from err
        if not np.all(np.isfinite(value)):
            raise DataError(f"{where}: label '{name}' contains NaN or inf")
        labels[name] = value
    return labels


def _check_overlaps(positions: np.ndarray, cell: np.ndarray, pbc, min_distance: float, where: str) -> None:
    """`DataError` naming the first pair of atoms closer than `min_distance` (A), with its image."""
    # vesin's cell list slows down sharply for tiny cutoffs (its bins scale
    # with the cutoff), so search at 2 A and filter.
    senders, receivers, shifts = neighbour_list(positions, cell, pbc, max(min_distance, 2.0))
    d = np.linalg.norm(positions[receivers] - positions[senders] + shifts @ cell, axis=1)
    if len(d) and d.min() < min_distance:
        e = int(np.argmin(d))
        raise DataError(
            f"{where}: atoms {int(senders[e])} and {int(receivers[e])} overlap "
            f"(distance {d[e]:.4f} A < {min_distance} A, image {shifts[e].tolist()})"
        )


def configuration_from_atoms(
    atoms: ase.Atoms,
    keys: DataKeys = DataKeys(),
    *,
    source: str = "<memory>",
    index: int = 0,
    head: str = "Default",
    config_type_weights: Mapping[str, float] | None = None,
    require: Sequence[str] = (),
    min_distance: float | None = 0.1,
    read_labels: bool = True,
) -> Configuration:
    """One `Configuration` from an `ase.Atoms`; raises `DataError` naming source and frame.

    `head` is used when the frame has no `keys.head` entry. `min_distance` (A) flags
    overlapping atoms (None skips the check). `read_labels=False` reads the structure
    only (for inference: an attached calculator's results are then not taken as labels).
    """
    where = f"{source}, frame {index}"
    unknown = set(require) - set(LABELS)
    if unknown:
        raise ValueError(f"require may only name {LABELS}, got {sorted(unknown)}")
    n_atoms = len(atoms)
    if n_atoms == 0:
        raise DataError(f"{where}: structure has no atoms")
    positions, cell, pbc = _geometry(atoms, where)
    labels = _labels(atoms, keys, require, where, read_labels)
    if min_distance is not None:
        _check_overlaps(positions, cell, pbc, min_distance, where)

    info = atoms.info
    config_type = str(info.get(keys.config_type, "Default"))
    type_weight = 1.0 if config_type_weights is None else config_type_weights.get(config_type, 1.0)
    try:
        weight = float(info.get(keys.weight, 1.0)) * float(type_weight)
        label_weights = {
            name: float(info.get(getattr(keys, f"{name}_weight"), 1.0)) if labels[name] is not None else 0.0
            for name in LABELS
        }
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: a weight entry is not a number: {err}") from err
    return Configuration(
        atomic_numbers=np.array(atoms.numbers, dtype=np.int32),
        positions=positions,
        cell=cell,
        pbc=pbc,
        energy=labels["energy"],
        forces=labels["forces"],
        stress=labels["stress"],
        virials=labels["virials"],
        weight=weight,
        energy_weight=label_weights["energy"],
        forces_weight=label_weights["forces"],
        stress_weight=label_weights["stress"],
        virials_weight=label_weights["virials"],
        config_type=config_type,
        head=str(info.get(keys.head, head)),
        source=source,
        index=index,
    )


def _db_frames(path: str, index: str):
    """The rows of an ASE database as Atoms, key-value pairs and data in info/arrays."""
    import ase.db
    from ase.io.formats import string2index

    selection = string2index(index)
    with ase.db.connect(path) as db:
        rows = list(db.select())
    rows = rows[selection] if isinstance(selection, slice) else [rows[selection]]
    for row in rows:
        atoms = row.toatoms()
        atoms.info.update(row.key_value_pairs)
        for key, value in (row.get("data") or {}).items():
            value = np.asarray(value)
            if value.ndim >= 1 and value.shape[0] == len(atoms) and value.dtype != object:
                atoms.arrays[key] = value
            else:
                atoms.info[key] = value
        yield atoms


def read_frames(path: str, index: str = ":", format: str | None = None):
    """Atoms of a structure file; ASE databases with their key-value pairs (module docstring)."""
    if format == "db" or (format is None and path.endswith(".db")):
        return _db_frames(path, index)
    return ase.io.iread(path, index=index, format=format)


def read_configurations(
    path: str | os.PathLike,
    keys: DataKeys = DataKeys(),
    *,
    index: str = ":",
    format: str | None = None,
    head: str = "Default",
    config_type_weights: Mapping[str, float] | None = None,
    require: Sequence[str] = (),
    min_distance: float | None = 0.1,
) -> list[Configuration]:
    """All frames of a structure file as `Configuration`s (see `configuration_from_atoms`).

    Raises `DataError` for a missing, unreadable, malformed or empty file, and for a
    bad frame (naming the file and the frame index).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: file is empty, it holds no structures")
    configs = []
    frame = 0
    try:
        for frame, atoms in enumerate(read_frames(path, index=index, format=format)):
            configs.append(
                configuration_from_atoms(
                    atoms,
                    keys,
                    source=path,
                    index=frame,
                    head=head,
                    config_type_weights=config_type_weights,
                    require=require,
                    min_distance=min_distance,
                )
            )
            frame += 1
    except DataError:
        raise
    except Exception as err:  # ASE raises many kinds for malformed files
        raise DataError(f"{path}, frame {frame}: cannot be read ({type(err).__name__}: {err})") from err
    if not configs:
        raise DataError(f"{path}: file holds no structures")
    return configs


def is_isolated_atom(config: Configuration) -> bool:
    """mace-torch's test: one atom with config_type `IsolatedAtom`."""
    return config.n_atoms == 1 and config.config_type == ISOLATED_ATOM


def split_isolated_atoms(
    configs: Iterable[Configuration], keep: bool = False
) -> tuple[list[Configuration], dict[int, float]]:
    """Take out single-atom `IsolatedAtom` frames; their energies are the E0s.

    Returns (the other configurations, or all of them when `keep`; {Z: E0 in eV}).
    An IsolatedAtom without energy gives E0 = 0 with a warning, as in mace-torch.
    """
    rest, e0s = [], {}
    for config in configs:
        if is_isolated_atom(config):
            z = int(config.atomic_numbers[0])
            if config.energy is None:
                warnings.warn(f"{config.where}: IsolatedAtom without energy, E0 of Z={z} set to 0", stacklevel=2)
            e0s[z] = 0.0 if config.energy is None else float(config.energy)
            if keep:
                rest.append(config)
        else:
            rest.append(config)
    return rest, e0s


def check_elements(configs: Iterable[Configuration], atomic_numbers: Sequence[int]) -> None:
    """Raise `DataError` if a structure holds an element outside `atomic_numbers`.

    The message names the element and the first frame that holds it.
    """
    known = set(int(z) for z in atomic_numbers)
    for config in configs:
        missing = sorted(set(np.unique(config.atomic_numbers).tolist()) - known)
        if missing:
            z = missing[0]
            symbol = chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"
            model = ", ".join(chemical_symbols[k] for k in sorted(known))
            raise DataError(f"{config.where}: element {symbol} (Z={z}) is not one of the model's elements [{model}]")


def check_config_type_weights(weights: Mapping[str, float], configs: Sequence[Configuration], source: str) -> None:
    """Raise `DataError` if `weights` names a config_type no structure has.

    "Default" (mace-torch's default `{"Default": 1.0}`) is always accepted. A
    misspelt type would otherwise weight nothing, silently.
    """
    present = {c.config_type for c in configs}
    for name, value in weights.items():
        try:
            float(value)
        except (TypeError, ValueError) as err:
            raise DataError(f"config_type_weights: the weight of {name!r} is not a number: {value!r}") from err
        if name != "Default" and name not in present:
            raise DataError(
                f"config_type_weights names config_type {name!r}, which no structure of {source} has "
                f"(config types there: {sorted(present)})"
            )
