"""The skin an MD run chooses when none is given (jaxtl/md/skin.py)."""

import numpy as np
from ase import units

from jaxtl.md.skin import MAX_SKIN, MIN_SKIN, STEPS_PER_REBUILD, choose_skin

H, CU = 1.008, 63.546  # amu


def crossing_steps(skin, speed, dt_fs):
    """Steps an atom at `speed` (A / ASE time) takes to move skin/2."""
    return 0.5 * skin / (speed * dt_fs * units.fs)


def test_the_fastest_mobile_atom_crosses_half_the_skin_in_the_set_steps():
    velocities = np.array([[0.002, 0.0, 0.0], [0.0, 0.003, 0.0], [0.03, 0.0, 0.0]]) / units.fs
    masses = np.array([CU, CU, H])
    skin = choose_skin(velocities, masses, np.array([True, True, True]), None, dt_fs=0.5)
    assert MIN_SKIN < skin < MAX_SKIN
    np.testing.assert_allclose(crossing_steps(skin, 0.03 / units.fs, 0.5), STEPS_PER_REBUILD)
    # the fast atom held fixed: the skin follows the next fastest (clipped at the minimum)
    held = choose_skin(velocities, masses, np.array([True, True, False]), None, dt_fs=0.5)
    assert held == MIN_SKIN < skin
    # twice the time step, twice the skin
    np.testing.assert_allclose(choose_skin(velocities, masses, np.ones(3, bool), None, dt_fs=1.0), 2 * skin)


def test_a_start_at_rest_gets_the_thermal_speed_of_the_lightest_mobile_element():
    at_rest = np.zeros((2, 3))
    masses = np.array([CU, H])
    skin = choose_skin(at_rest, masses, np.array([True, True]), 300.0, dt_fs=0.5)
    np.testing.assert_allclose(crossing_steps(skin, np.sqrt(3 * units.kB * 300.0 / H), 0.5), STEPS_PER_REBUILD)
    assert choose_skin(at_rest, masses, np.array([True, False]), 300.0, dt_fs=0.5) < skin  # H fixed: Cu's speed
    assert choose_skin(at_rest, masses, np.array([True, True]), None, dt_fs=0.5) == MIN_SKIN


def test_the_skin_is_bounded():
    fast = np.array([[1.0, 0.0, 0.0]]) / units.fs  # 1 A/fs
    assert choose_skin(fast, np.array([H]), np.array([True]), None, dt_fs=1.0) == MAX_SKIN
    assert choose_skin(fast, np.array([H]), np.array([False]), None, dt_fs=1.0) == MIN_SKIN  # nothing moves
