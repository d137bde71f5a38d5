"""Energies are invariant and forces equivariant under E(3) and permutations."""

import numpy as np
import pytest
from ase import Atoms
from helpers import random_jaxtl_model
from scipy.spatial.transform import Rotation

from jaxtl.convert.verify import jaxtl_batch


@pytest.fixture(scope="module")
def model():
    return random_jaxtl_model(seed=1)


def cluster(seed=0, n=9):
    rng = np.random.default_rng(seed)
    pos = []
    while len(pos) < n:
        p = rng.uniform(0, 4.0, 3)
        if all(np.linalg.norm(p - q) > 1.0 for q in pos):
            pos.append(p)
    return Atoms(numbers=rng.choice([1, 8, 29], n), positions=np.array(pos))


def evaluate(model, atoms):
    out = model.predict(jaxtl_batch([atoms], model.config.r_max).graph)
    return float(out["energy"][0]), np.asarray(out["forces"])[: len(atoms)], np.asarray(out["stress"])[0]


@pytest.mark.parametrize("reflect", [False, True])
def test_rotation_and_reflection(model, reflect):
    atoms = cluster()
    e0, f0, _ = evaluate(model, atoms)
    R = Rotation.random(random_state=3).as_matrix()
    if reflect:
        R = R @ np.diag([1.0, 1.0, -1.0])
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ R.T
    e1, f1, _ = evaluate(model, rotated)
    assert abs(e1 - e0) < 1e-10 * abs(e0)
    np.testing.assert_allclose(f1, f0 @ R.T, atol=1e-10)


def test_rotation_of_periodic_cell_rotates_stress(model):
    atoms = cluster(seed=4)
    atoms.set_cell([[6.0, 0.3, 0.0], [0.2, 6.5, 0.1], [0.0, 0.4, 6.2]])
    atoms.pbc = True
    e0, f0, s0 = evaluate(model, atoms)
    R = Rotation.random(random_state=5).as_matrix()
    rotated = atoms.copy()
    rotated.set_cell(atoms.cell.array @ R.T)
    rotated.positions = atoms.positions @ R.T
    e1, f1, s1 = evaluate(model, rotated)
    assert abs(e1 - e0) < 1e-10 * abs(e0)
    np.testing.assert_allclose(f1, f0 @ R.T, atol=1e-10)
    np.testing.assert_allclose(s1, R @ s0 @ R.T, atol=1e-12)


def test_translation_and_permutation(model):
    atoms = cluster(seed=2)
    e0, f0, _ = evaluate(model, atoms)
    moved = atoms.copy()
    moved.positions += np.array([3.1, -2.0, 7.5])
    e1, f1, _ = evaluate(model, moved)
    assert abs(e1 - e0) < 1e-10 * abs(e0)
    np.testing.assert_allclose(f1, f0, atol=1e-10)
    perm = np.random.default_rng(0).permutation(len(atoms))
    e2, f2, _ = evaluate(model, atoms[perm])
    assert abs(e2 - e0) < 1e-10 * abs(e0)
    np.testing.assert_allclose(f2, f0[perm], atol=1e-10)


def test_forces_are_minus_energy_gradient(model):
    atoms = cluster(seed=6)
    _, f, _ = evaluate(model, atoms)
    h = 1e-5
    for i, k in [(0, 0), (3, 2), (5, 1)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(evaluate(model, plus)[0] - evaluate(model, minus)[0]) / (2 * h)
        assert abs(fd - f[i, k]) < 1e-6
