"""The compiled ACE calculator against ace-jax's own: same numbers to float64 round-off on
periodic, partly periodic and open cells of several sizes, few compilations, clear errors."""

import os
import sys

import numpy as np
import pytest
from ase import Atoms

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu  # noqa: E402

from jaxtl.graph.io import DataError  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An order-3 H/Cu ACE basis (the product basis has all three factor counts of the
    H2/Cu students) with a seeded random readout, written in ace-jax's model.npz format."""
    pytest.importorskip("ace_jax", reason="ACE students need the ace extra")
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from ace_jax.basis.export import save_npz
    from ace_jax.basis.model import build_model

    from jaxtl.distill import ACEStudentConfig

    jax.config.update("jax_enable_x64", True)
    basis = build_model([1, 29], 3, 6, rcut=4.0, r0=ACEStudentConfig().r0_table([1, 29]), seed=0)
    rng = np.random.default_rng(0)
    m = basis.model
    m = eqx.tree_at(
        lambda m: (m.WB, m.Wpair, m.E0),
        m,
        (
            jnp.asarray(rng.normal(scale=0.05, size=m.WB.shape)),
            jnp.asarray(rng.normal(scale=0.05, size=m.Wpair.shape)),
            jnp.asarray([-1.1, -3.0]),
        ),
    )
    path = tmp_path_factory.mktemp("ace_calc") / "model.npz"
    save_npz(path, basis._replace(model=m))
    return path


def structures():
    """Periodic slabs of 9 and 36 atoms (one with two H), the slab periodic in-plane only,
    and an open cluster."""
    slab = h_on_cu(1, rattle=0.05)
    big = h_on_cu(2, rattle=0.05).repeat((2, 2, 1))
    big.positions[-1, 2] += 0.4
    big += Atoms("H", positions=[big.positions[-1] + [0.0, 0.0, 0.75]])
    in_plane = h_on_cu(3, rattle=0.05)
    in_plane.pbc = (True, True, False)
    cluster = h_on_cu(4, rattle=0.05)
    cluster.pbc = False  # the cell stays: ace-jax's neighbour list needs one; jaxtl's ignores it
    return [slab, big, in_plane, cluster, slab.copy()]


def _results(calc, atoms):
    a = atoms.copy()
    a.calc = calc
    stress = a.get_stress() if a.pbc.all() else None
    return a.get_potential_energy(), a.get_forces(), stress


def test_same_energies_forces_and_stress_as_ace_jax(model_file):
    from ace_jax.calc.point import ACECalculator

    from jaxtl.distill.ace_calculator import CompiledACECalculator

    fast, reference = CompiledACECalculator(model_file, radial_table=None), ACECalculator(str(model_file))
    for atoms in structures():
        e, f, s = _results(fast, atoms)
        e_ref, f_ref, s_ref = _results(reference, atoms)
        assert np.abs(f_ref).max() > 0.05  # a fitted model with real forces, not a zero readout
        np.testing.assert_allclose(e, e_ref, rtol=1e-12, err_msg=atoms.get_chemical_formula())
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-10, err_msg=atoms.get_chemical_formula())
        if s is not None:
            np.testing.assert_allclose(s, s_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.results["energies"].sum(), e, rtol=1e-12)
    assert fast.n_compilations <= 4  # one per new (larger) layout; the repeated slab reuses one


def test_radial_table_matches_ace_jax_table_and_stays_near_exact(model_file):
    from ace_jax.calc.point import ACECalculator

    from jaxtl.distill.ace_calculator import CompiledACECalculator

    table, exact = CompiledACECalculator(model_file, radial_table=2000), CompiledACECalculator(model_file, None)
    reference = ACECalculator(str(model_file), radial_table=2000)
    default, default_reference = CompiledACECalculator(model_file), ACECalculator(str(model_file), radial_table=True)
    assert default.model.rtab_grid and not exact.model.rtab_grid
    for atoms in structures()[:2]:
        e, f, _ = _results(default, atoms)  # the default reads ace-jax's default table
        e_ref, f_ref, _ = _results(default_reference, atoms)
        np.testing.assert_allclose(e, e_ref, rtol=1e-12)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-10)
        e, f, _ = _results(table, atoms)
        e_ref, f_ref, _ = _results(reference, atoms)
        np.testing.assert_allclose(e, e_ref, rtol=1e-12)
        np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-10)
        e_exact, f_exact, _ = _results(exact, atoms)
        np.testing.assert_allclose(e, e_exact, rtol=1e-9)
        np.testing.assert_allclose(f, f_exact, rtol=0, atol=1e-5)


def test_small_moves_reuse_one_program_and_capacities_never_shrink(model_file):
    from jaxtl.distill.ace_calculator import CompiledACECalculator

    calc = CompiledACECalculator(model_file)
    atoms = h_on_cu(5, rattle=0.05)
    rng = np.random.default_rng(0)
    layouts = []
    for _ in range(6):
        atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
        atoms.calc = calc
        atoms.get_forces()
        layouts.append(calc._layout)
    assert calc.n_compilations == 1
    small = h_on_cu(6, rattle=0.05)
    small.calc = calc
    small.get_forces()
    assert calc._layout == layouts[-1]  # a structure that fits runs in the existing layout


def test_unknown_element_is_named(model_file):
    from jaxtl.distill.ace_calculator import CompiledACECalculator

    atoms = h_on_cu(0, rattle=0.05)
    atoms[-1].symbol = "O"
    atoms.calc = CompiledACECalculator(model_file, source="student X")
    with pytest.raises(DataError, match=r"student X: element O \(Z=8\)"):
        atoms.get_potential_energy()


def test_state_copy_follows_the_atoms_given(model_file):
    """The calculator keeps its own copy of the atoms it computed (ASE's cache key), without
    the second copy ASE's Calculator.calculate makes: a move in place is seen, and so is a
    direct `calculate` on other atoms."""
    from jaxtl.distill.ace_calculator import CompiledACECalculator

    calc = CompiledACECalculator(model_file)
    atoms = h_on_cu(7, rattle=0.05)
    atoms.calc = calc
    before = atoms.get_forces()
    assert calc.atoms is not atoms and np.array_equal(calc.atoms.positions, atoms.positions)
    atoms.positions[-1] += [0.0, 0.0, 0.1]  # in place: the stored copy must not follow
    assert not np.array_equal(calc.atoms.positions, atoms.positions)
    after = atoms.get_forces()
    assert np.abs(after - before).max() > 1e-4
    np.testing.assert_array_equal(calc.atoms.positions, atoms.positions)
    other = h_on_cu(8, rattle=0.05)
    calc.calculate(other, ["energy", "forces"])
    assert calc.atoms is not other and np.array_equal(calc.atoms.positions, other.positions)
    reference = other.copy()
    reference.calc = CompiledACECalculator(model_file)
    np.testing.assert_allclose(calc.results["forces"], reference.get_forces(), rtol=0, atol=1e-12)


def test_stress_from_the_first_call_that_asks_for_it(model_file):
    """Energy and forces alone until stress is asked for; then the same stress as a calculator
    asked for it from the start, and stress with every later call (no second call per step)."""
    from jaxtl.distill.ace_calculator import CompiledACECalculator

    calc, reference = CompiledACECalculator(model_file), CompiledACECalculator(model_file)
    atoms = h_on_cu(9, rattle=0.05)
    atoms.calc = calc
    forces = atoms.get_forces()
    assert "stress" not in calc.results
    stress = atoms.get_stress()
    expected = atoms.copy()
    expected.calc = reference
    np.testing.assert_allclose(stress, expected.get_stress(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(forces, expected.get_forces(), rtol=0, atol=1e-12)
    atoms.positions[0] += [0.05, 0.0, 0.0]
    atoms.get_forces()
    assert "stress" in calc.results
