"""E0s (isolated-atom energies) for fine-tuning to a new DFT reference.

A foundation model's E0s belong to its own level of theory; fine-tuning data from
another code or functional shifts total energies by a per-element constant. The
`atomic_energies` constant ([n_heads, n_elements] in eV, columns in the order of
`MACEConfig.atomic_numbers`) is therefore refitted before training:

- "average": least squares of total energies on element counts, E ~ sum_z n_z E0_z
  (mace-torch's `compute_average_E0s`);
- "estimated": least squares of the residual E_ref - E_foundation on element
  counts, added to the foundation's E0s (the foundation's interaction energy is
  kept, only the reference shift is learnt);
- "foundation": keep the foundation's E0s;
- given: {Z or symbol: E0 in eV}, or a JSON file / string of one.

Elements of the model absent from the data keep the foundation's E0s. When the
data do not determine every E0 (e.g. MD of one molecule: every frame has the same
composition) the minimum-norm least-squares solution is used, with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np
from ase.data import atomic_numbers as symbol_to_z
from ase.data import chemical_symbols

from jaxtl.graph.io import Configuration, DataError, check_elements

METHODS = ("average", "estimated", "foundation")


class RankDeficientWarning(UserWarning):
    """The compositions in the data do not determine every E0."""


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
            RankDeficientWarning, stacklevel=3)
    e0s, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return e0s


def _parse_given(e0s) -> dict[int, float]:
    if isinstance(e0s, (str, os.PathLike)):
        text = str(e0s)
        e0s = json.loads(open(text).read() if os.path.isfile(text) else text)
    out = {}
    for key, value in dict(e0s).items():
        if isinstance(key, str) and not key.lstrip("-").isdigit():
            if key not in symbol_to_z:
                raise ValueError(f"E0s: unknown element {key!r}")
            z = symbol_to_z[key]
        else:
            z = int(key)
        out[z] = float(value)
    return out


def fit_e0s(
    configs: Sequence[Configuration],
    atomic_numbers: Sequence[int],
    foundation_e0s: np.ndarray,
    method: str | Mapping = "average",
    foundation_energy: Callable[[Sequence[Configuration]], np.ndarray] | None = None,
    head: int | None = None,
) -> np.ndarray:
    """New `atomic_energies` [n_heads, n_elements] (eV) for fine-tuning on `configs`.

    Args:
        configs: the fine-tuning structures (those without energy are skipped).
        atomic_numbers: the model's elements, in column order.
        foundation_e0s: the foundation's `atomic_energies`, [n_heads, n_elements].
        method: "average", "estimated", "foundation", or given E0s (a dict
            {Z or symbol: eV}, or a JSON file/string of one).
        foundation_energy: configs -> foundation total energies [n] in eV; needed
            by "estimated".
        head: the row to refit (default: every row).

    Raises:
        DataError: a structure holds an element the model does not know (naming
            element, file and frame), or no structure has an energy.
    """
    configs = list(configs)
    check_elements(configs, atomic_numbers)
    base = np.array(foundation_e0s, dtype=np.float64, copy=True)
    if base.ndim == 1:
        base = base[None]
    rows = slice(None) if head is None else slice(head, head + 1)
    zs = [int(z) for z in atomic_numbers]

    if isinstance(method, str) and method == "foundation":
        return base
    if not (isinstance(method, str) and method in METHODS):
        given = _parse_given(method)
        unknown = sorted(set(given) - set(zs))
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise DataError(f"E0s given for {names}, which the foundation model does not know")
        for z, e in given.items():
            base[rows, zs.index(z)] = e
        missing = sorted({int(z) for c in configs for z in c.atomic_numbers} - set(given))
        if missing:
            warnings.warn("no E0 given for " + ", ".join(chemical_symbols[z] for z in missing)
                          + ": keeping the foundation's", stacklevel=2)
        return base

    labelled = [c for c in configs if c.energy is not None and c.energy_weight > 0]
    counts = element_counts(labelled, zs)
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    energies = np.array([c.energy for c in labelled])
    if method == "estimated":
        if foundation_energy is None:
            raise ValueError('E0s "estimated" needs the foundation model (foundation_energy)')
        residual = energies - np.asarray(foundation_energy(labelled), dtype=np.float64)
        base[rows, present] += lstsq_e0s(counts[:, present], residual)
    else:
        base[rows, present] = lstsq_e0s(counts[:, present], energies)
    return base
