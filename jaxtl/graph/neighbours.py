"""Neighbour lists on the host (numpy), computed with vesin.

The edge set is the one of mace-torch's `mace.data.neighborhood.get_neighborhood`:
every ordered pair (j, i, S) with |x_i - x_j + S @ cell| < r_max, including an atom's
own periodic images, without the true self-edge (i == j, S == 0). Directions that are
not periodic never get a shift (S = 0 there), so their cell vector does not matter and
may be zero: vesin supports mixed pbc natively, no large fake cell vector is needed.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import numpy as np

_vesin = None


def _import_vesin():
    """vesin, imported without letting it import torch or cupy.

    vesin's Python layer imports torch and cupy when they are installed (to accept
    their tensors); jaxtl passes numpy only, and `import jaxtl` must not pull in torch
    (seconds of start-up, and a second CUDA runtime next to JAX's). So the two are
    hidden while vesin is imported, unless they are already loaded.
    """
    global _vesin
    if _vesin is None:
        hidden = [name for name in ("torch", "cupy") if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # makes `import name` raise ImportError
        try:
            import vesin
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
        _vesin = vesin
    return _vesin


def _checked(positions, cell, pbc, r_max: float):
    """(positions [n, 3] float64, cell [3, 3] float64, pbc [3] bool), or a ValueError naming
    what is wrong with them."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [n_atoms, 3], got {positions.shape}")
    if not np.all(np.isfinite(positions)):
        raise ValueError("positions contain NaN or inf")
    if not r_max > 0:
        raise ValueError(f"r_max must be positive, got {r_max}")
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,)).copy()
    cell = np.zeros((3, 3)) if cell is None else np.array(cell, dtype=np.float64)
    if cell.shape != (3, 3):
        raise ValueError(f"cell must be [3, 3], got {cell.shape}")
    if not np.all(np.isfinite(cell)):
        raise ValueError("cell contains NaN or inf")
    if pbc.any() and _degenerate(cell.tobytes(), pbc.tobytes()):
        # mace-torch silently swaps a zero cell for the identity here; a periodic
        # direction without a lattice vector is a broken input, so say so.
        raise ValueError(f"cell {cell.tolist()} is degenerate along periodic directions {pbc.tolist()}")
    return positions, cell, pbc


@functools.lru_cache(maxsize=64)
def _degenerate(cell: bytes, pbc: bytes) -> bool:
    """Whether the periodic rows of a cell (as bytes: a trajectory asks about one cell again
    and again, and the rank costs an SVD) span fewer directions than there are."""
    periodic = np.frombuffer(pbc, dtype=bool)
    rows = np.frombuffer(cell, dtype=np.float64).reshape(3, 3)[periodic]
    return np.linalg.matrix_rank(rows, tol=1e-8) < int(periodic.sum())


def vesin_list(r_max: float):
    """A vesin neighbour list of cutoff `r_max` (A), to reuse across `neighbour_vectors` calls:
    a half list (each pair once), which `neighbour_vectors` mirrors; vesin finds it in about
    four fifths of the time of the full list on small periodic cells.

    The cell list on one thread where vesin offers the choice (0.6 on): vesin's default picks
    its algorithm and starts a thread per core on every call, which on the small structures
    of a calculator's call costs more than it saves (56 atoms: ~130 instead of ~160 us; no
    gain from threads up to 3584 atoms on a 2-core CPU).
    """
    vesin = _import_vesin()
    try:
        return vesin.NeighborList(cutoff=float(r_max), full_list=False, algorithm="cell_list", n_threads=1)
    except TypeError:  # a vesin without these options
        return vesin.NeighborList(cutoff=float(r_max), full_list=False)


def neighbour_vectors(
    positions: np.ndarray, cell: np.ndarray | None, pbc: Sequence[bool] | bool, r_max: float, reuse=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges of `neighbour_list` with their vectors, in vesin's order (unsorted).

    Args:
        positions, cell, pbc, r_max: as `neighbour_list`.
        reuse: a `vesin_list(r_max)` (or a vesin full list) to reuse; None: a new one.

    Returns:
        centres: [n_edges] int64, index i.
        neighbours: [n_edges] int64, index j.
        vectors: [n_edges, 3] float64 in A, r_ij = positions[j] - positions[i] + S @ cell.
    """
    positions, cell, pbc = _checked(positions, cell, pbc, r_max)
    if len(positions) == 0:
        return np.zeros((0,), np.int64), np.zeros((0,), np.int64), np.zeros((0, 3))
    nl = vesin_list(r_max) if reuse is None else reuse
    # a half list is mirrored below into new arrays, so vesin's own buffers need no copy
    first, second, vectors = nl.compute(positions, cell, pbc, quantities="ijD", copy=nl.full_list)
    first, second, vectors = np.asarray(first, np.int64), np.asarray(second, np.int64), np.asarray(vectors)
    self_pair = first == second
    if np.any(self_pair):  # an atom's own periodic images are edges, itself at zero shift is not
        keep = ~(self_pair & np.all(vectors == 0.0, axis=1))
        first, second, vectors = first[keep], second[keep], vectors[keep]
    if not nl.full_list:  # each pair once: add its reverse
        return np.concatenate([first, second]), np.concatenate([second, first]), np.concatenate([vectors, -vectors])
    return first, second, vectors


def neighbour_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: Sequence[bool] | bool,
    r_max: float,
    sort: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All edges shorter than `r_max`, in a deterministic order.

    Args:
        positions: [n_atoms, 3] in A (need not be wrapped into the cell).
        cell: [3, 3] in A, rows are lattice vectors; may be None or zero when no
            direction is periodic; rows of non-periodic directions are ignored.
        pbc: three booleans (or one for all directions).
        r_max: cutoff in A; an edge is kept when its length is strictly below it.
        sort: order the edges as below; False keeps vesin's order (deterministic for the
            same input), for a caller that orders them itself.

    Returns:
        senders: [n_edges] int32, index j.
        receivers: [n_edges] int32, index i.
        unit_shifts: [n_edges, 3] int32, such that
            r_ij = positions[i] - positions[j] + unit_shifts @ cell.
        Edges are sorted by (sender, receiver, unit_shifts).

    Examples:
        Two atoms 1.5 A apart in a non-periodic box: one edge each way.

        >>> senders, receivers, shifts = neighbour_list([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]], None, False, r_max=2.0)
        >>> senders.tolist(), receivers.tolist(), shifts.tolist()
        ([0, 1], [1, 0], [[0, 0, 0], [0, 0, 0]])

        One atom in a periodic cubic cell of side 2 A: its six nearest images.

        >>> senders, receivers, shifts = neighbour_list([[0.0, 0.0, 0.0]], 2.0 * np.eye(3), True, r_max=2.5)
        >>> len(senders), sorted(map(tuple, shifts.tolist()))[:2]
        (6, [(-1, 0, 0), (0, -1, 0)])
    """
    positions, cell, pbc = _checked(positions, cell, pbc, r_max)
    if len(positions) == 0:
        empty = np.zeros((0,), np.int32)
        return empty, empty.copy(), np.zeros((0, 3), np.int32)

    calculator = _import_vesin().NeighborList(cutoff=float(r_max), full_list=True)
    first, second, shifts = calculator.compute(positions, cell, pbc, quantities="ijS", copy=True)
    # vesin: D = x[second] - x[first] + S @ cell, so first is the sender j.
    senders = np.asarray(first, dtype=np.int64)
    receivers = np.asarray(second, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    keep = (senders != receivers) | shifts.any(axis=1)
    senders, receivers, shifts = senders[keep], receivers[keep], shifts[keep]
    if sort:
        # A fixed order makes scatter sums (and so energies) bit-reproducible.
        keys = edge_keys(senders, receivers, shifts, len(positions))
        if keys is None:
            order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], receivers, senders))
        else:
            order = np.argsort(keys, kind="stable")
        senders, receivers, shifts = senders[order], receivers[order], shifts[order]
    return senders.astype(np.int32), receivers.astype(np.int32), shifts.astype(np.int32)


def edge_keys(senders, receivers, unit_shifts, n_nodes: int, bound: int | None = None) -> np.ndarray | None:
    """One int64 per edge that orders edges as (sender, receiver, shift x, y, z) do.

    senders, receivers: [n_edges] node ids below `n_nodes`; unit_shifts: [n_edges, 3]
    integers, each within [-bound, bound] (default: their largest magnitude). Edges with
    equal keys are the same edge. None when the keys would not fit in 62 bits.
    """
    shifts = np.asarray(unit_shifts, np.int64).reshape(-1, 3)
    if bound is None:
        bound = int(np.abs(shifts).max(initial=0))
    base = 2 * bound + 1
    if n_nodes * n_nodes * base**3 >= 2**62:
        return None
    keys = np.asarray(senders, np.int64) * n_nodes + np.asarray(receivers, np.int64)
    for c in range(3):
        keys = keys * base + (shifts[:, c] + bound)
    return keys
