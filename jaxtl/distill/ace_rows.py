"""Neighbours of one structure as dense rows: one row per atom, `width` slots each.

A linear ACE sums over each centre's neighbours, so a [n_rows, width] matrix of neighbour
slots makes that sum a reduction over a fixed axis (no scatter), and the energy's
gradient with respect to the neighbour vectors gives the forces with one segment sum.
Each slot carries its neighbour vector r_ij (vesin computes it with the list, so the
compiled program needs no positions and no periodic shifts) and its species pair
(zi * n_species + zj), which picks the pair's radial weights. Everything a call needs
travels in two arrays (`NeighbourRows`), since each array handed to the compiled program
costs a host-to-device transfer of its own.

Built on the host (numpy) from jaxtl's vesin neighbour list. The row count and width are
rounded up (`round_capacity`) and never shrink below `at_least`, so a trajectory settles
on one layout and compiles once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from jaxtl.graph.batching import round_capacity
from jaxtl.graph.neighbours import neighbour_vectors


@dataclasses.dataclass(frozen=True)
class RowLayout:
    """The static shapes of a `NeighbourRows` (hashable: the key of one compiled program).

    Attributes:
        n_rows: rows, one per atom, padded (>= the atoms).
        width: neighbour slots per row.
    """

    n_rows: int
    width: int

    @property
    def n_slots(self) -> int:
        return self.n_rows * self.width


class NeighbourRows(NamedTuple):
    """The padded arrays of one structure (numpy), read by `unpack_rows`.

    vectors: [n_slots, 3] A: each slot's r_ij = x[neighbour] - x[row] + S @ cell,
        row-major (zero on padding slots).
    indices: [2 n_slots + n_rows] int32: each slot's neighbour atom (0 on padding slots),
        each slot's species pair zi * n_species + zj (-1 on padding slots), each row's
        species index (-1 on padding rows).
    """

    vectors: np.ndarray
    indices: np.ndarray


def unpack_rows(layout: RowLayout, vectors, indices):
    """(r_ij [n_rows, width, 3], neighbour [n_rows, width], pair [n_rows, width] (-1:
    padding), species [n_rows] (-1: padding)); numpy or jax."""
    r, k, s = layout.n_rows, layout.width, layout.n_slots
    return (
        vectors.reshape(r, k, 3),
        indices[:s].reshape(r, k),
        indices[s : 2 * s].reshape(r, k),
        indices[2 * s :],
    )


def _width(k: int, headroom: float) -> int:
    return round_capacity(math.ceil(k * (1.0 + headroom))) if k > 0 else 1


def pack_rows(
    positions,
    cell,
    pbc,
    species,
    n_species: int,
    cutoff: float,
    at_least: RowLayout | None = None,
    headroom: float = 0.0,
    vesin_list=None,
) -> tuple[RowLayout, NeighbourRows]:
    """Neighbour rows of one structure.

    Args:
        positions: [n, 3] in A.
        cell: [3, 3] in A (rows are lattice vectors; ignored along non-periodic directions).
        pbc: three booleans.
        species: [n] int species index (0 .. n_species - 1) per atom.
        n_species: number of species of the model.
        cutoff: in A; pairs closer than it are neighbours.
        at_least: a previous layout whose capacities are kept (never shrink).
        headroom: slots per row beyond the largest neighbour count, as a fraction. The
            width is rounded up (16, 20, 24, 28, 32, ...) and never shrinks, so in MD the
            program compiles again only when a count first passes a rounding step;
            headroom trades padded work on every call for fewer such compilations.
        vesin_list: a `jaxtl.graph.neighbours.vesin_list(cutoff)` to reuse.

    Returns (layout, arrays).
    """
    species = np.asarray(species, dtype=np.int64)
    n = len(species)
    centre, nbr, rij = neighbour_vectors(positions, cell, pbc, cutoff, reuse=vesin_list)
    counts = np.bincount(centre, minlength=n)
    first = np.cumsum(counts) - counts
    if np.any(centre[1:] < centre[:-1]):
        # each edge's slot is its rank among its centre's edges; a stable sort finds it
        # (on 16-bit keys numpy's radix sort, several times faster than on int64)
        order = np.argsort(centre.astype(np.uint16) if n <= 1 << 16 else centre, kind="stable")
        slot = np.empty(len(centre), np.int64)
        slot[order] = np.arange(len(centre)) - first[centre[order]]
    else:
        slot = np.arange(len(centre)) - first[centre]

    k_max = int(counts.max(initial=0))
    layout = RowLayout(
        n_rows=max(round_capacity(n), at_least.n_rows if at_least else 0),
        width=max(_width(k_max, headroom), at_least.width if at_least else 0),
    )
    r, s = layout.n_rows, layout.n_slots
    at = centre * layout.width + slot
    vectors = np.zeros((s, 3))
    vectors[at] = rij
    indices = np.empty(2 * s + r, np.int32)
    indices[:s] = 0
    indices[s:] = -1
    indices[at] = nbr
    indices[s + at] = species[centre] * n_species + species[nbr]
    indices[2 * s : 2 * s + n] = species
    return layout, NeighbourRows(vectors, indices)
