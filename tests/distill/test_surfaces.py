"""Step edges cut into flat slabs: coordination of what is left, which atoms go, bad input."""

import numpy as np
import pytest
from ase.build import fcc100, fcc110, fcc111, molecule
from ase.constraints import FixAtoms
from ase.neighborlist import neighbor_list

from jaxtl.distill import step_edges
from jaxtl.distill.surfaces import close_packed_axis

CU_SHELL = 3.0  # A, between the first (2.55) and second (3.61) Cu neighbour shells


def coordination(atoms) -> np.ndarray:
    i, j = neighbor_list("ij", atoms, CU_SHELL)
    keep = atoms.numbers[j] == 29
    return np.bincount(i[keep], minlength=len(atoms))


def slab_with_h2(build, size=(3, 3, 4)):
    slab = build("Cu", size=size, vacuum=8.0)
    slab.pbc = True
    slab.set_constraint(FixAtoms(indices=np.flatnonzero(slab.positions[:, 2] < slab.positions[:, 2].min() + 0.1)))
    h2 = molecule("H2")
    h2.translate(slab.positions[slab.positions[:, 2].argmax()] + [0.3, 0.2, 2.5])
    return slab + h2


def test_a_removed_row_leaves_step_edges_of_seven_neighbours():
    slab = slab_with_h2(fcc111)
    assert not np.any(coordination(slab)[slab.numbers == 29] == 7)  # a flat (111) slab: 9 and 12
    stepped = step_edges(slab, rows=1)
    cn = coordination(stepped)
    top = stepped.positions[:, 2] > stepped.positions[stepped.numbers == 29, 2].max() - 0.5
    top &= stepped.numbers == 29
    assert len(stepped) == len(slab) - 3  # one row of the 3x3 layer
    assert np.all(cn[top] == 7)  # both rows left border the trench: an A and a B step
    assert (stepped.numbers == 1).sum() == 2  # the H2 stays
    assert "top: 1 of 3 rows" in stepped.info["step_edges"]


def test_faces_rows_and_close_packed_direction():
    slab = slab_with_h2(fcc111)
    both = step_edges(slab, rows=1, faces=("top", "bottom"))
    assert len(both) == len(slab) - 6
    fixed = both.constraints[0].get_indices()
    assert len(fixed) == 6 and np.all(both.numbers[fixed] == 29)  # the constraint follows the kept atoms
    assert np.allclose(both.positions[fixed, 2], slab.positions[slab.constraints[0].get_indices(), 2].min())
    two = step_edges(slab_with_h2(fcc100, (4, 4, 4)), rows=2)
    assert len(two) == len(slab_with_h2(fcc100, (4, 4, 4))) - 8
    # (110): the close-packed rows (atoms 2.55 A apart, 3.61 A between rows) run along ase's cell vector 1
    stepped = step_edges(slab_with_h2(fcc110, (3, 3, 6)))
    assert "along cell vector 1" in stepped.info["step_edges"]
    assert "along cell vector 0" in step_edges(slab_with_h2(fcc110, (3, 3, 6)), row_axis=0).info["step_edges"]
    assert close_packed_axis(slab_with_h2(fcc110, (3, 3, 6))) == 1 and close_packed_axis(slab) == 0


def test_removal_does_not_depend_on_atom_order():
    slab = slab_with_h2(fcc111)
    order = np.random.default_rng(0).permutation(len(slab))
    a, b = step_edges(slab), step_edges(slab[order])
    key = lambda atoms: sorted(map(tuple, np.round(atoms.positions, 6)))  # noqa: E731
    assert key(a) == key(b)


def test_bad_input_is_named():
    slab = slab_with_h2(fcc111)
    with pytest.raises(ValueError, match="removing 3 leaves no step"):
        step_edges(slab, rows=3)
    with pytest.raises(ValueError, match="faces must be"):
        step_edges(slab, faces=("side",))
    with pytest.raises(ValueError, match="periodic"):
        step_edges(_no_pbc(slab))
    with pytest.raises(ValueError, match="no Ag atoms"):
        step_edges(slab, element="Ag")
    with pytest.raises(ValueError, match="rows must be >= 1"):
        step_edges(slab, rows=0)
    with pytest.raises(ValueError, match="row_axis"):
        step_edges(slab, row_axis=2)


def _no_pbc(atoms):
    out = atoms.copy()
    out.pbc = False
    return out
