"""Neighbours of one structure in dense blocks, one per (centre species, neighbour species).

A linear ACE's radial basis R_nl(r) has its own weights for every species pair. With the
neighbours of each pair in a block of their own, the pair is known when the program is
traced, so its radial weights are a constant matrix (one matmul per block) instead of a
per-edge gather of weight tables, and pooling a centre's neighbours is a sum over a fixed
axis instead of a scatter. Built on the host (numpy) from jaxtl's vesin neighbour list.

For species z the centres are `rows[off_z : off_z + N_z]` (atom indices, padded with the
parking atom n). Block (zi, zj) holds K slots per centre of species zi:
`neighbour[s : s + N_zi * K]` read as [N_zi, K], its periodic shift (A) and a mask.
Capacities are rounded up (`round_capacity`) and never shrink below `at_least`, so a
trajectory settles on one layout and compiles once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from jaxtl.graph.batching import round_capacity
from jaxtl.graph.neighbours import neighbour_list


@dataclasses.dataclass(frozen=True)
class BlockLayout:
    """The static shapes of a `NeighbourBlocks` (hashable: the key of one compiled program).

    Attributes:
        n_atoms: rows of the padded positions (atoms + at least one parking atom).
        species_rows: per species index z, (offset into `rows`, capacity N_z); N_z may be 0.
        blocks: per present pair, (zi, zj, K, offset into the slot arrays); N_zi * K slots.
        n_slots: total slots.
    """

    n_atoms: int
    species_rows: tuple
    blocks: tuple
    n_slots: int


class NeighbourBlocks(NamedTuple):
    """Padded arrays of one structure (numpy; shapes from its `BlockLayout`).

    positions: [n_atoms, 3] A, zero beyond the real atoms.
    rows: [sum N_z] int32 centre atom per row, grouped by species; padding rows point at
        the parking atom (index n).
    row_mask: [sum N_z] bool, False on padding rows.
    centre: [n_slots] int32 centre atom per slot (parking atom on padding slots).
    neighbour: [n_slots] int32 neighbour atom per slot (parking atom on padding slots).
    shift: [n_slots, 3] A, the periodic image shift: r_ij = x[neighbour] - x[centre] + shift.
    slot_mask: [n_slots] bool.
    """

    positions: np.ndarray
    rows: np.ndarray
    row_mask: np.ndarray
    centre: np.ndarray
    neighbour: np.ndarray
    shift: np.ndarray
    slot_mask: np.ndarray


def _width(k: int, headroom: float) -> int:
    return round_capacity(math.ceil(k * (1.0 + headroom))) if k > 0 else 0


def pack_neighbours(
    positions,
    cell,
    pbc,
    species,
    n_species: int,
    cutoff: float,
    at_least: BlockLayout | None = None,
    headroom: float = 0.0,
) -> tuple[BlockLayout, NeighbourBlocks]:
    """Neighbour blocks of one structure.

    Args:
        positions: [n, 3] in A.
        cell: [3, 3] in A (rows are lattice vectors; ignored along non-periodic directions).
        pbc: three booleans.
        species: [n] int species index (0 .. n_species - 1) per atom.
        n_species: number of species of the model.
        cutoff: in A; pairs closer than it are neighbours.
        at_least: a previous layout whose capacities are kept (never shrink).
        headroom: slots per centre beyond the largest neighbour count, as a fraction. The
            widths are rounded up (16, 20, 24, 28, 32, ...) and never shrink, so in MD a
            block compiles again only when a count first passes a rounding step; headroom
            trades padded work on every call for fewer such compilations.

    Returns (layout, arrays).
    """
    positions = np.asarray(positions, dtype=np.float64)
    species = np.asarray(species, dtype=np.int64)
    n, nz = len(positions), int(n_species)
    centre, nbr, unit = neighbour_list(positions, cell, pbc, cutoff, sort=False)  # x[nbr] - x[centre] + S @ cell
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    shift = unit.astype(np.float64) @ cell
    pair = species[centre] * nz + species[nbr]
    order = np.argsort(pair * n + centre, kind="stable")  # by pair, then centre: each centre's slots in a run
    centre, nbr, shift, pair = centre[order], nbr[order], shift[order], pair[order]

    counts = np.bincount(pair * n + centre, minlength=nz * nz * n)
    k_max = counts.reshape(nz * nz, n).max(axis=1, initial=0)
    first = np.cumsum(counts) - counts
    slot = np.arange(len(centre)) - first[pair * n + centre]

    n_of = np.bincount(species, minlength=nz)
    by_species = np.argsort(species, kind="stable")
    rank = np.empty(n, np.int64)
    rank[by_species] = np.arange(n) - (np.cumsum(n_of) - n_of)[species[by_species]]

    prev_rows = dict(enumerate(at_least.species_rows)) if at_least else {}
    prev_k = {(zi, zj): k for zi, zj, k, _ in at_least.blocks} if at_least else {}
    species_rows, off = [], 0
    for z in range(nz):
        cap = max(round_capacity(int(n_of[z])) if n_of[z] else 0, prev_rows.get(z, (0, 0))[1])
        species_rows.append((off, cap))
        off += cap
    blocks, block_of, slots = [], {}, 0
    for zi in range(nz):
        n_rows = species_rows[zi][1]
        for zj in range(nz):
            k = max(_width(int(k_max[zi * nz + zj]), headroom), prev_k.get((zi, zj), 0))
            if n_rows and k:
                block_of[zi * nz + zj] = (slots, k)
                blocks.append((zi, zj, k, slots))
                slots += n_rows * k
    layout = BlockLayout(
        n_atoms=max(round_capacity(n + 1), at_least.n_atoms if at_least else 0),
        species_rows=tuple(species_rows),
        blocks=tuple(blocks),
        n_slots=slots,
    )

    padded = np.zeros((layout.n_atoms, 3))
    padded[:n] = positions
    rows = np.full(off, n, np.int32)
    row_off = np.asarray([o for o, _ in species_rows], np.int64)
    rows[row_off[species] + rank] = np.arange(n)
    block_off = np.zeros(nz * nz, np.int64)
    block_k = np.ones(nz * nz, np.int64)
    for p, (s, k) in block_of.items():
        block_off[p], block_k[p] = s, k
    at = block_off[pair] + rank[centre] * block_k[pair] + slot
    centres = np.full(slots, n, np.int32)
    centres[at] = centre
    neighbour = np.full(slots, n, np.int32)
    neighbour[at] = nbr
    shifts = np.zeros((slots, 3))
    shifts[at] = shift
    slot_mask = np.zeros(slots, bool)
    slot_mask[at] = True
    return layout, NeighbourBlocks(padded, rows, rows < n, centres, neighbour, shifts, slot_mask)
