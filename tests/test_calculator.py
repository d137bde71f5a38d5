"""MACECalculator: ASE results, padding to rounded capacities, few compilations."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

import jaxtl
from jaxtl.model_io import save_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "model"))
    from helpers import random_jaxtl_model

    loaded = random_jaxtl_model(seed=2)
    path = tmp_path_factory.mktemp("model") / "m"
    save_model(path, loaded.config, loaded.variables)
    return path


def test_calculator_results_and_compilations(model_dir):
    calc = jaxtl.MACECalculator(model_dir, default_dtype="float64")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.calc = calc
    energies = []
    rng = np.random.default_rng(0)
    for step in range(12):  # an "MD" of varying geometry and size
        a = atoms.copy()
        if step % 4 == 3:
            a = a[: len(a) - step // 4]  # changing atom count
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = calc
        energies.append(a.get_potential_energy())
        f = a.get_forces()
        s = a.get_stress()
        assert f.shape == (len(a), 3) and s.shape == (6,)
        assert np.isfinite(f).all()
    assert calc.n_compilations <= 3, calc.n_compilations
    # stress against a finite difference of the energy under strain
    a = atoms.copy()
    a.calc = calc
    s = a.get_stress(voigt=False)
    eps = 1e-5
    e = []
    for sign in (1, -1):
        b = a.copy()
        b.calc = calc
        strain = np.eye(3)
        strain[0, 1] = strain[1, 0] = sign * eps / 2
        b.set_cell(a.cell.array @ strain, scale_atoms=True)
        e.append(b.get_potential_energy())
    fd = (e[0] - e[1]) / (2 * eps) / a.get_volume()
    assert abs(fd - s[0, 1]) < 1e-7


def test_calculator_rejects_unknown_element(model_dir):
    calc = jaxtl.MACECalculator(model_dir)
    atoms = Atoms("Fe2", positions=[[0, 0, 0], [2, 0, 0]])
    atoms.calc = calc
    with pytest.raises(ValueError, match="Fe"):
        atoms.get_potential_energy()


def test_calculator_rejects_nan_positions(model_dir):
    calc = jaxtl.MACECalculator(model_dir)
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]])
    atoms.calc = calc
    with pytest.raises(ValueError, match="NaN"):
        atoms.get_potential_energy()


def test_import_jaxtl_does_not_import_torch():
    import subprocess
    import sys

    code = "import jaxtl, sys; jaxtl.MACECalculator; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_calculator_cueq_backend_matches_default(model_dir):
    """backend="cueq" (cuEquivariance; its JAX reference on a CPU) gives the same results."""
    pytest.importorskip("cuequivariance_jax", reason="cuequivariance-jax not installed")
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    results = []
    for backend in ("xla", "cueq"):
        a = atoms.copy()
        a.calc = jaxtl.MACECalculator(model_dir, default_dtype="float64", backend=backend)
        results.append((a.get_potential_energy(), a.get_forces(), a.get_stress()))
    (e0, f0, s0), (e1, f1, s1) = results
    assert abs(e1 - e0) < 1e-10 * abs(e0)
    np.testing.assert_allclose(f1, f0, rtol=0, atol=1e-11 * np.abs(f0).max())
    np.testing.assert_allclose(s1, s0, rtol=0, atol=1e-11 * np.abs(s0).max())
