"""E0s (isolated-atom energies) for fine-tuning to a new DFT reference.

A foundation model's E0s belong to its own level of theory; fine-tuning data from
another code or functional shifts total energies by a per-element constant. The
`atomic_energies` constant ([n_heads, n_elements] in eV, columns in the order of
`MACEConfig.atomic_numbers`) is therefore refitted before training, with
mace-torch's `--E0s` choices (parsed by `jaxtl.train.e0s.parse_e0s`):

- "average": least squares of total energies on element counts, E ~ sum_z n_z E0_z
  (mace-torch's `compute_average_E0s`);
- "estimated": least squares of the residual E_ref - E_foundation on element
  counts, added to the foundation's E0s (the foundation's interaction energy is
  kept, only the reference shift is learnt);
- "foundation": keep the foundation's E0s;
- "isolated": the energies of the IsolatedAtom frames of the training file;
- given: {Z or symbol: E0 in eV}, a JSON file / string of one, or mace's literal
  "{1: -13.6, 8: -2042.0}".

Elements of the model absent from the data keep the foundation's E0s; an element of
the data without an E0 in given values (or IsolatedAtom frames) is an error naming
it. When the data do not determine every E0 (e.g. MD of one molecule: every frame
has the same composition) the minimum-norm least-squares solution is used, with a
warning.

The parsing and fitting live in `jaxtl.train.e0s` (training from scratch uses them
too); the names are importable from here as well.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxtl.graph.io import Configuration, DataError, check_elements
from jaxtl.train.e0s import (
    METHODS,
    RankDeficientWarning,
    data_elements,
    e0_row,
    element_counts,
    isolated_e0s,
    lstsq_e0s,
    parse_e0s,
    with_energy,
)

__all__ = ["METHODS", "RankDeficientWarning", "element_counts", "fit_e0s", "lstsq_e0s", "parse_e0s"]


def fit_e0s(
    configs: Sequence[Configuration],
    atomic_numbers: Sequence[int],
    foundation_e0s: np.ndarray,
    method: str | Mapping | None = "average",
    foundation_energy: Callable[[Sequence[Configuration]], np.ndarray] | None = None,
    head: int | None = None,
    isolated: Sequence[Configuration] = (),
) -> np.ndarray:
    """New `atomic_energies` [n_heads, n_elements] (eV) for fine-tuning on `configs`.

    Args:
        configs: the fine-tuning structures (those without energy are skipped).
        atomic_numbers: the model's elements, in column order.
        foundation_e0s: the foundation's `atomic_energies`, [n_heads, n_elements].
        method: "average", "estimated", "foundation", "isolated", or given E0s (a
            dict {Z or symbol: eV}, a JSON file/string or a Python dict literal); None:
            "isolated" when `isolated` holds frames, else "average" (mace-torch).
        foundation_energy: configs -> foundation total energies [n] in eV; needed
            by "estimated".
        head: the row to refit (default: every row).
        isolated: the IsolatedAtom frames of the data (for "isolated").

    Raises:
        DataError: a structure holds an element the model does not know (naming
            element, file and frame), no structure has an energy, or an element of
            the data has no E0 in the given values (naming it).
        ValueError: `method` cannot be parsed.
    """
    configs = list(configs)
    check_elements(configs, atomic_numbers)
    base = np.array(foundation_e0s, dtype=np.float64, copy=True)
    if base.ndim == 1:
        base = base[None]
    rows = slice(None) if head is None else slice(head, head + 1)
    zs = [int(z) for z in atomic_numbers]
    method = parse_e0s(("isolated" if isolated else "average") if method is None else method)

    if method == "foundation":
        return base
    if isinstance(method, dict) or method == "isolated":
        if method == "isolated":
            given, source = isolated_e0s(isolated), "the IsolatedAtom frames"
            if not given:
                raise DataError('E0s "isolated": the training file holds no IsolatedAtom frames')
        else:
            given, source = method, "--E0s"
        unknown = sorted(set(given) - set(zs))
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[z] for z in unknown)
            raise DataError(f"E0s given for {names}, which the foundation model does not know")
        for r in range(base.shape[0])[rows]:
            base[r] = e0_row(given, zs, data_elements(configs), source, fallback=base[r])
        return base

    labelled = with_energy(configs)
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
