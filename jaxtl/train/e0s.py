"""E0s (isolated-atom energies): mace-torch's `--E0s` choices, parsed and resolved.

An E0s setting is one of

- "average": least squares of total energies on element counts, E ~ sum_z n_z E0_z
  (mace-torch's `compute_average_E0s`);
- "isolated": the energies of the `IsolatedAtom` frames of the training file (one
  atom, `config_type=IsolatedAtom`), as mace-torch takes them;
- "estimated": least squares of E_ref - E_foundation added to the foundation's E0s
  (fine-tuning only);
- "foundation": the foundation's E0s (fine-tuning only);
- given values: a dict {Z or symbol: eV}, a JSON file or string of one, or mace's
  Python literal "{1: -13.6, 8: -2042.0}" (read with `ast.literal_eval`, never eval).

Every element the data hold must end up with an E0; a missing one is an error that
names it.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from ase.data import atomic_numbers as symbol_to_z
from ase.data import chemical_symbols

from jaxtl.graph.io import Configuration, DataError

METHODS = ("average", "isolated", "estimated", "foundation")
E0Spec = str | Mapping


class RankDeficientWarning(UserWarning):
    """The compositions in the data do not determine every E0."""


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"


def parse_e0s(spec: E0Spec) -> str | dict[int, float]:
    """A method name (lower case) or given E0s {Z: eV} from any accepted form.

    Raises:
        ValueError: the text is none of the methods, files, JSON or dict literals,
            or names an unknown element or a non-numeric energy.
    """
    if isinstance(spec, Mapping):
        return _given(spec, "E0s")
    text = str(spec).strip()
    if text.lower() in METHODS:
        return text.lower()
    if os.path.isfile(text):
        try:
            return _given(json.loads(open(text).read()), text)
        except json.JSONDecodeError as err:
            raise ValueError(f"E0s file {text}: not JSON ({err})") from err
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, Mapping):
            return _given(value, "E0s")
    raise ValueError(
        f"E0s {text!r} cannot be read: expected one of {', '.join(METHODS)}, a JSON file, "
        "or a dict of energies in eV such as {1: -13.6, 8: -2042.0} or '{\"H\": -13.6}'"
    )


def _given(values: Mapping, where: str) -> dict[int, float]:
    out = {}
    for key, value in values.items():
        if isinstance(key, str) and not key.strip().lstrip("-").isdigit():
            if key.strip() not in symbol_to_z:
                raise ValueError(f"{where}: unknown element {key!r}")
            z = symbol_to_z[key.strip()]
        else:
            z = int(key)
        if not 0 < z < len(chemical_symbols):
            raise ValueError(f"{where}: {key!r} is not an atomic number")
        try:
            out[z] = float(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: E0 of {_symbol(z)} is not a number: {value!r}") from err
    return out


def element_counts(configs: Sequence[Configuration], atomic_numbers: Sequence[int]) -> np.ndarray:
    """[n_configs, n_elements] number of atoms of each element (model order)."""
    index = {int(z): i for i, z in enumerate(atomic_numbers)}
    counts = np.zeros((len(configs), len(index)))
    for row, config in enumerate(configs):
        for z, n in zip(*np.unique(config.atomic_numbers, return_counts=True)):
            counts[row, index[int(z)]] = n
    return counts


def lstsq_e0s(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """Minimum-norm least-squares E0s [n_cols] of `energies` ~ counts @ E0s.

    Warns with `RankDeficientWarning` when the counts matrix has rank below its
    number of columns (E0s then only fixed up to the null space; minimum norm).
    """
    if len(energies) == 0:
        raise DataError("no structure with an energy label: E0s cannot be fitted")
    rank = np.linalg.matrix_rank(counts)
    if rank < counts.shape[1]:
        warnings.warn(
            f"the {len(energies)} structures span only {rank} independent compositions for "
            f"{counts.shape[1]} elements: the E0s are not determined by the data; using the "
            "minimum-norm least-squares solution (only sums over the compositions seen are meaningful)",
            RankDeficientWarning,
            stacklevel=3,
        )
    e0s, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0s


def with_energy(configs: Sequence[Configuration]) -> list[Configuration]:
    """The structures whose energy is a label (present, weight > 0)."""
    return [c for c in configs if c.energy is not None and c.energy_weight > 0]


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Energy labels as the least-squares E0 fit sees them.

    Attributes:
        counts: [rows, n_elements] atoms of each element (model order) of each row.
        energies: [rows] mean total energy of the row's structures (eV).
        multiplicity: [rows] structures a row stands for: a row of m structures with
            mean energy E weighs as those m rows would (sqrt(m) on both sides), so
            one row per composition gives the per-structure minimiser.
    """

    counts: np.ndarray
    energies: np.ndarray
    multiplicity: np.ndarray

    @classmethod
    def from_configs(cls, configs: Sequence[Configuration], atomic_numbers: Sequence[int]) -> EnergyTable:
        """One row per structure with an energy label."""
        labelled = with_energy(configs)
        return cls(
            element_counts(labelled, atomic_numbers),
            np.array([c.energy for c in labelled], np.float64),
            np.ones(len(labelled)),
        )


def average_e0s(
    configs: Sequence[Configuration], atomic_numbers: Sequence[int], fixed: Mapping[int, float] | None = None
) -> dict[int, float]:
    """Least-squares E0s {Z: eV} of the elements present; `fixed` ones are held at their
    value and only the others are fitted (to the energies less the fixed part)."""
    return table_e0s(EnergyTable.from_configs(configs, atomic_numbers), atomic_numbers, fixed)


def table_e0s(
    table: EnergyTable, atomic_numbers: Sequence[int], fixed: Mapping[int, float] | None = None
) -> dict[int, float]:
    """`average_e0s` of an `EnergyTable`."""
    fixed = dict(fixed or {})
    zs = [int(z) for z in atomic_numbers]
    root = np.sqrt(table.multiplicity)
    counts, energies = table.counts * root[:, None], table.energies * root
    free = [i for i in np.flatnonzero(counts.sum(axis=0) > 0) if zs[i] not in fixed]
    out = dict(fixed)
    if free:
        held = counts @ np.array([fixed.get(z, 0.0) for z in zs])
        for i, e in zip(free, lstsq_e0s(counts[:, free], energies - held)):
            out[zs[i]] = float(e)
    return out


def isolated_e0s(isolated: Sequence[Configuration]) -> dict[int, float]:
    """{Z: eV} from IsolatedAtom frames (one atom each); one without energy gives 0 with
    a warning, as in mace-torch."""
    out = {}
    for config in isolated:
        z = int(config.atomic_numbers[0])
        if config.energy is None:
            warnings.warn(f"{config.where}: IsolatedAtom without energy, E0 of {_symbol(z)} set to 0", stacklevel=2)
        out[z] = 0.0 if config.energy is None else float(config.energy)
    return out


def e0_row(
    e0s: Mapping[int, float],
    atomic_numbers: Sequence[int],
    needed: Sequence[int],
    source: str,
    fallback: Sequence[float] | None = None,
) -> np.ndarray:
    """E0s [n_elements] in model order; every element of `needed` must be in `e0s`.

    Elements not needed take `fallback` (e.g. the foundation's) or 0.

    Raises:
        DataError: an element of `needed` has no E0 (named, with where they came from).
    """
    missing = sorted(set(int(z) for z in needed) - set(e0s))
    if missing:
        names = ", ".join(f"{_symbol(z)} (Z={z})" for z in missing)
        raise DataError(f"no E0 for {names} in the E0s from {source}: give one for every element of the data")
    row = np.zeros(len(atomic_numbers)) if fallback is None else np.array(fallback, dtype=np.float64)
    for i, z in enumerate(atomic_numbers):
        if int(z) in e0s:
            row[i] = e0s[int(z)]
    return row


def data_elements(configs: Sequence[Configuration]) -> list[int]:
    """Sorted atomic numbers present in `configs`."""
    return sorted({int(z) for c in configs for z in c.atomic_numbers})


def resolve_e0s(
    spec: E0Spec | None,
    configs: Sequence[Configuration],
    atomic_numbers: Sequence[int],
    isolated: Sequence[Configuration] = (),
    needed: Sequence[int] | None = None,
) -> tuple[np.ndarray, str]:
    """E0s [n_elements] (eV, model order) for training from scratch, and a description.

    spec None: the IsolatedAtom frames when there are any (mace-torch), else "average".
    "average": IsolatedAtom frames, where present, fix their elements (as in mace-torch);
    the others are fitted. "isolated": every element needs an IsolatedAtom frame.
    "estimated" and "foundation" need a foundation model (`jaxtl finetune`).
    `needed`: the elements that must get an E0 (default: those of `configs`).
    """
    needed = data_elements(configs) if needed is None else needed
    return resolve_table_e0s(
        spec, EnergyTable.from_configs(configs, atomic_numbers), atomic_numbers, isolated_e0s(isolated), needed
    )


def resolve_table_e0s(
    spec: E0Spec | None,
    table: EnergyTable,
    atomic_numbers: Sequence[int],
    from_isolated: Mapping[int, float],
    needed: Sequence[int],
) -> tuple[np.ndarray, str]:
    """`resolve_e0s` from an `EnergyTable` and the IsolatedAtom frames' E0s {Z: eV}."""
    method = parse_e0s("isolated" if (spec is None and from_isolated) else (spec or "average"))
    if method in ("estimated", "foundation"):
        raise ValueError(f'E0s "{method}" needs a foundation model: fine-tune one (`jaxtl.finetune`)')
    if method == "isolated":
        if not from_isolated:
            raise DataError(
                'E0s "isolated": the training file holds no IsolatedAtom frames (one atom, config_type=IsolatedAtom)'
            )
        return e0_row(from_isolated, atomic_numbers, needed, "the IsolatedAtom frames"), "isolated"
    if method == "average":
        fitted = table_e0s(table, atomic_numbers, fixed=from_isolated)
        source = "average" + (
            " (IsolatedAtom frames for " + ", ".join(_symbol(z) for z in sorted(from_isolated)) + ")"
            if from_isolated
            else ""
        )
        return e0_row(fitted, atomic_numbers, needed, "the least-squares fit (no energy labels)"), source
    return e0_row(method, atomic_numbers, needed, "--E0s"), "given"
