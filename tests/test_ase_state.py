"""jaxtl's state check answers as ASE's compare_atoms on every kind of change."""

import numpy as np
from ase.build import fcc111
from ase.calculators.calculator import compare_atoms as ase_compare_atoms

from jaxtl.ase_state import compare_atoms


def _variants(atoms):
    same = atoms.copy()
    moved = atoms.copy()
    moved.positions[3, 1] += 1e-6
    below_tol = atoms.copy()
    below_tol.positions[0, 0] = np.nextafter(below_tol.positions[0, 0], np.inf)  # 1e-15 A at most
    swapped = atoms.copy()
    swapped.numbers[2] = 1
    cell = atoms.copy()
    cell.cell[2, 2] += 0.1
    pbc = atoms.copy()
    pbc.pbc = (True, True, False)
    momenta = atoms.copy()
    momenta.set_momenta(np.ones((len(atoms), 3)))
    nan = atoms.copy()
    nan.positions[1, 2] = np.nan
    inf = atoms.copy()
    inf.positions[1, 2] = np.inf
    tags = atoms.copy()
    tags.set_tags(np.arange(len(atoms)))
    return [None, same, moved, below_tol, swapped, cell, pbc, momenta, nan, inf, tags]


def test_the_same_changes_as_ase_for_every_pair():
    base = fcc111("Cu", (2, 2, 3), vacuum=5.0, periodic=True)
    base.rattle(0.05, seed=1)
    variants = _variants(base)
    for a in variants:
        for b in variants[1:]:
            for excluded in (None, {"initial_magmoms"}, {"positions", "cell"}):
                expected = sorted(ase_compare_atoms(a, b, tol=1e-15, excluded_properties=excluded))
                assert sorted(compare_atoms(a, b, tol=1e-15, excluded_properties=excluded)) == expected
