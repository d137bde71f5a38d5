"""MD: NVE energy conservation, agreement with ASE, Langevin temperature, explosions, CLI."""

import os
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from helpers import random_jaxtl_model  # noqa: E402

from jaxtl.graph.io import DataError  # noqa: E402
from jaxtl.md import MDConfig, MDEngine  # noqa: E402
from jaxtl.md.ase_md import run_ase_md  # noqa: E402
from jaxtl.md.skin import MAX_SKIN, MIN_SKIN  # noqa: E402


@pytest.fixture(scope="module")
def cu_model():
    """A tiny float64 Cu MACE, randomly initialised (smooth, so good enough for integrator tests)."""
    return random_jaxtl_model(
        seed=1,
        atomic_numbers=(29,),
        r_max=4.0,
        hidden_irreps="8x0e+8x1o",
        max_ell=1,
        correlation=(2,),
        num_interactions=1,
        avg_num_neighbors=(20.0,),
        radial_MLP=(8, 8),
    )


@pytest.fixture(scope="module")
def engine(cu_model):
    return MDEngine(cu_model)


def cu_cell():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=0)
    return atoms


def test_nve_energy_drift(engine):
    result = engine.run(
        cu_cell(), MDConfig(steps=300, dt=1.0, ensemble="nve", temperature=300, check_every=25, save_every=50)
    )
    drift = result.drift()
    print(
        f"\nNVE 32 Cu, 300 x 1 fs, float64: drift {drift['drift_eV_per_atom_per_ps']:.2e} eV/atom/ps, "
        f"max |dE| {drift['max_deviation_eV_per_atom']:.2e} eV/atom, {result.steps_per_s:.0f} steps/s"
    )
    assert result.error is None and result.steps_done == 300
    assert abs(drift["drift_eV_per_atom_per_ps"]) < 1e-4
    assert drift["max_deviation_eV_per_atom"] < 1e-4
    assert result.n_rebuilds > 0 and len(result.frames) == 7
    # initial forces + a chunk shape, + the capacities outgrown as the third shell (4.41 A) crosses r_max + skin
    # (the skin list's) and comes within r_max as the cell heats (the exact graph's, grown after a step overflowed)
    assert result.n_overflows <= 2 and result.n_compilations <= 7
    assert result.temperature[0] > 100  # the atoms really moved
    f = result.frames[-1]
    assert f.info["md_step"] == 300 and np.isfinite(f.get_forces()).all()


def test_jit_md_matches_ase_velocity_verlet(engine, cu_model):
    atoms = cu_cell()
    config = MDConfig(steps=30, dt=1.0, ensemble="nve", temperature=500, check_every=7, save_every=10)
    ours = engine.run(atoms, config)
    theirs = run_ase_md(cu_model, atoms, config)
    assert ours.error is None and theirs.error is None
    for a, b in zip(ours.frames, theirs.frames):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-8)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-8)
    np.testing.assert_allclose(ours.total_energy, theirs.total_energy, atol=1e-8)


def expanded_cu_cell():
    """Cu fcc with a = r_max = 4 A, rattled: second-shell pairs sit at r_max, so pairs keep
    crossing the cutoff, and a neighbour list that missed one would give wrong forces."""
    atoms = bulk("Cu", "fcc", a=4.0, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    return atoms


@pytest.mark.parametrize("skin", [None, 0.1])
def test_skin_gives_the_calculator_trajectory(cu_model, skin):
    """The engine's own skin (None), and one too thin for the motion (rebuilt every few
    steps), give the calculator path's trajectory to round-off: the skin check fires and a
    rebuild replaces the list before any pair closer than r_max can be missing."""
    atoms = expanded_cu_cell()
    config = MDConfig(steps=40, dt=2.0, ensemble="nve", temperature=1500, check_every=10, save_every=5, skin=skin)
    ours = MDEngine(cu_model).run(atoms, config)
    theirs = run_ase_md(cu_model, atoms, config)
    assert ours.error is None and theirs.error is None and len(ours.frames) == len(theirs.frames) == 9
    for a, b in zip(ours.frames, theirs.frames):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-9)
    assert ours.n_rebuilds >= (10 if skin else 2), ours.n_rebuilds


def test_a_step_that_outgrows_the_exact_capacities_is_taken_again(cu_model, monkeypatch):
    """Exact capacities with no headroom, for a cell whose second shell sits at r_max: pairs
    cross r_max every step, and a step whose pairs closer than r_max do not fit is not
    accepted; the engine grows the capacities (a recompile) and takes it again, so no pair is
    lost and the trajectory is still the calculator path's."""
    from jaxtl.md import simulate

    monkeypatch.setattr(simulate, "EXACT_HEADROOM", (0.0, 0.0))
    monkeypatch.setattr(simulate, "EXACT_STEPS", 1024)  # capacities on a grid of 1 below 2048
    atoms = expanded_cu_cell()
    config = MDConfig(steps=20, dt=2.0, ensemble="nve", temperature=1500, check_every=10, save_every=5, skin=0.5)
    engine = MDEngine(cu_model)
    ours = engine.run(atoms, config)
    theirs = run_ase_md(cu_model, atoms, config)
    assert ours.error is None and ours.n_overflows >= 1
    # initial forces and a chunk, a chunk per growth (of the exact or the skin capacities)
    assert ours.n_compilations <= 2 + ours.n_overflows + ours.n_rebuilds
    for a, b in zip(ours.frames, theirs.frames, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), rtol=0, atol=1e-9)


def test_rebuilds_only_when_an_atom_has_moved_half_the_skin(engine):
    """A skin the run does not use up is never rebuilt, however many chunks the run takes."""
    result = engine.run(cu_cell(), MDConfig(steps=40, dt=1.0, ensemble="nve", temperature=100, check_every=5, skin=1.0))
    assert result.error is None and result.n_rebuilds == 0 and result.skin == 1.0


def test_fixed_atoms_stay_and_langevin_thermostats(engine):
    from ase.constraints import FixAtoms

    atoms = cu_cell()
    atoms.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    result = engine.run(
        atoms,
        MDConfig(steps=300, dt=1.0, ensemble="langevin", temperature=600, friction=0.1, check_every=25, save_every=100),
    )
    assert result.error is None
    np.testing.assert_allclose(result.frames[-1].positions[:4], atoms.positions[:4], atol=1e-12)
    t = result.temperature[100:].mean()
    assert 400 < t < 800, t
    assert result.n_compilations <= 1  # chunk shape of another ensemble; initial forces already compiled


def test_explosion_stops_naming_the_step_and_keeps_frames(engine):
    from ase import units

    atoms = Atoms("Cu2", positions=[[0, 0, 0], [3.0, 0, 0]])
    atoms.set_velocities(np.array([[0.2, 0, 0], [-0.2, 0, 0]]) / units.fs)  # 0.2 A/fs towards each other
    result = engine.run(
        atoms, MDConfig(steps=50, dt=1.0, ensemble="nve", temperature=None, save_every=1, check_every=10)
    )
    assert result.error is not None and "step 7" in result.error and "atoms 0 and 1" in result.error
    assert result.steps_done == 6 and len(result.frames) == 7


def test_unknown_element_is_named(engine):
    atoms = Atoms("CuH", positions=[[0, 0, 0], [2.0, 0, 0]])
    with pytest.raises(DataError, match="element H"):
        engine.run(atoms, MDConfig(steps=2))


def test_md_cli(tmp_path, cu_model, capsys):
    import json

    import ase.io

    from jaxtl.cli import main
    from jaxtl.model_io import save_model

    save_model(tmp_path / "m", cu_model.config, cu_model.variables)
    ase.io.write(tmp_path / "start.xyz", cu_cell())
    out = tmp_path / "traj.xyz"
    rc = main(
        [
            "md",
            "--model",
            str(tmp_path / "m"),
            "--structure",
            str(tmp_path / "start.xyz"),
            "--steps",
            "40",
            "--dt",
            "1",
            "--temperature",
            "300",
            "--save-every",
            "10",
            "--check-every",
            "20",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    frames = ase.io.read(out, ":")
    assert len(frames) == 5 and frames[-1].info["md_step"] == 40
    summary = json.loads(capsys.readouterr().out)
    assert MIN_SKIN <= summary["neighbour_list_skin_A"] <= MAX_SKIN  # the engine's own choice, reported
    assert summary["exact_graph_overflows"] >= 0 and summary["compilations"] >= 1 + summary["exact_graph_overflows"]


def test_md_help_gives_units(capsys):
    from jaxtl.cli import main

    with pytest.raises(SystemExit):
        main(["md", "--help"])
    text = capsys.readouterr().out
    assert "time step in fs" in text and "friction in 1/fs" in text and "(default 300)" in text
