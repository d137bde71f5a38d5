"""Neighbour rows of the compiled ACE path: every edge once, in its centre's row, with its
species pair; padding marked; capacities that never shrink."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu  # noqa: E402

from jaxtl.distill.ace_rows import RowLayout, pack_rows, unpack_rows  # noqa: E402
from jaxtl.graph.neighbours import neighbour_list  # noqa: E402


def _edges(atoms, cutoff):
    """{(centre, neighbour, rounded r_ij)} of jaxtl's neighbour list."""
    centre, nbr, unit = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    rij = atoms.positions[nbr] - atoms.positions[centre] + unit @ atoms.cell.array
    return {(int(i), int(j), *np.round(r, 8)) for i, j, r in zip(centre, nbr, rij)}


def test_every_edge_once_in_its_centres_row_with_its_pair():
    atoms = h_on_cu(0, rattle=0.05).repeat((2, 1, 1))
    species = (atoms.numbers == 29).astype(int)  # H 0, Cu 1
    layout, arrays = pack_rows(atoms.positions, atoms.cell.array, atoms.pbc, species, 2, 4.0)
    rij, neighbour, pair, row_species = unpack_rows(layout, *arrays)
    n = len(atoms)
    assert layout.n_rows >= n and arrays.vectors.shape == (layout.n_slots, 3)
    np.testing.assert_array_equal(row_species, np.r_[species, -np.ones(layout.n_rows - n, int)])
    rows, slots = np.nonzero(pair >= 0)
    found = {(int(i), int(j), *np.round(r, 8)) for i, j, r in zip(rows, neighbour[rows, slots], rij[rows, slots])}
    assert len(found) == len(rows) and found == _edges(atoms, 4.0)
    np.testing.assert_array_equal(pair[rows, slots], species[rows] * 2 + species[neighbour[rows, slots]])
    assert np.all(rows < n) and layout.width >= np.bincount(rows).max()
    assert not np.any(rij[pair < 0])  # padding slots: no vector, neighbour 0
    assert not np.any(neighbour[pair < 0])


def test_an_atom_sees_its_own_periodic_images_but_not_itself():
    from ase import Atoms

    atoms = Atoms("Cu", positions=[[0.1, 0.2, 0.3]], cell=2.5 * np.eye(3), pbc=True)
    layout, arrays = pack_rows(atoms.positions, atoms.cell.array, atoms.pbc, [1], 2, 3.0)
    rij, _, pair, _ = unpack_rows(layout, *arrays)
    lengths = np.sort(np.linalg.norm(rij[0][pair[0] >= 0], axis=1))
    np.testing.assert_allclose(lengths, [2.5] * 6)  # the six nearest images, no zero vector


def test_capacities_never_shrink_and_headroom_widens():
    atoms = h_on_cu(1, rattle=0.05)
    species = (atoms.numbers == 29).astype(int)
    args = (atoms.positions, atoms.cell.array, atoms.pbc, species, 2, 4.0)
    layout, _ = pack_rows(*args)
    big = RowLayout(n_rows=layout.n_rows + 8, width=layout.width + 8)
    kept, arrays = pack_rows(*args, at_least=big)
    assert kept == big and len(arrays.indices) == 2 * big.n_slots + big.n_rows
    assert arrays.vectors.shape == (big.n_slots, 3)
    wide, _ = pack_rows(*args, headroom=0.5)
    assert wide.width > layout.width


def test_a_lone_atom_has_one_padded_slot():
    atoms = h_on_cu(2)[:1]
    atoms.pbc = False
    layout, arrays = pack_rows(atoms.positions, None, False, [1], 2, 4.0)
    assert layout.width == 1 and np.all(unpack_rows(layout, *arrays)[2] == -1)
