"""The neighbour-list skin an MD run uses when the user gives none, chosen from the system.

The list holds every pair closer than r_max + skin and is rebuilt (on the host, between
compiled chunks) once an atom has moved skin/2 from where it was built. Each step cuts the
pairs closer than r_max out of it (`jaxtl.md.exact_graph`), so the model costs what it costs
on the exact list whatever the skin: a thicker skin adds only the cut (an elementwise pass
over the list's edges, ~3 % of a step at 1 A for MACE at r_max = 5 A) and a larger list to
build. A thinner one is used up sooner, and each rebuild ends a chunk early and makes a host
round trip (vesin, padding, a new graph on the device); the proposal that used up the skin
costs only the cut (the model is not evaluated for it). Over 0.24-2 A the CPU time of a step
is the same within the noise (224 H2/Cu atoms, benchmarks/md_speed.py), so the rule sizes the
skin for a rebuild about once a chunk (`MDConfig.check_every`'s default): the fastest atom,
moving straight on, needs `STEPS_PER_REBUILD` steps to use up half of it. Atoms in a solid or
a molecule vibrate rather than fly, so the observed time between rebuilds is longer than that.

The speed is the larger of the fastest mobile atom's at the start and the root mean square
thermal speed of the lightest mobile element at the run's temperature (so a start at rest
under a thermostat gets a skin for the speeds it will reach), and the skin is kept between
`MIN_SKIN` and `MAX_SKIN`.
"""

from __future__ import annotations

import numpy as np
from ase import units

# Steps between rebuilds the skin is sized for: a chunk's default length, so that a chunk
# seldom ends early for a rebuild.
STEPS_PER_REBUILD = 20
# A, the skin's bounds: below MIN_SKIN the list is rebuilt on vibrations alone (a thermal
# amplitude is ~0.05-0.1 A); at MAX_SKIN the list holds ~2.2x the exact edges (r_max 5 A),
# so the cut and each rebuild cost twice what they do at the exact list.
MIN_SKIN, MAX_SKIN = 0.3, 1.5


def choose_skin(
    velocities: np.ndarray,
    masses: np.ndarray,
    mobile: np.ndarray,
    temperature: float | None,
    dt_fs: float,
    steps_per_rebuild: int = STEPS_PER_REBUILD,
) -> float:
    """The skin in A for a run of time step `dt_fs` (fs).

    Args:
        velocities: [n_atoms, 3] initial velocities in A / ASE time unit.
        masses: [n_atoms] in amu.
        mobile: [n_atoms] bool, False for fixed atoms.
        temperature: the run's temperature in K (thermostat target), or None.
        steps_per_rebuild: steps the fastest atom, moving straight on, takes to cross skin/2.
    """
    mobile = np.asarray(mobile, bool)
    if not mobile.any():
        return MIN_SKIN
    speed = float(np.max(np.linalg.norm(np.asarray(velocities)[mobile], axis=1)))
    if temperature:
        speed = max(speed, float(np.sqrt(3 * units.kB * temperature / np.min(np.asarray(masses)[mobile]))))
    skin = 2 * steps_per_rebuild * speed * dt_fs * units.fs
    return float(np.clip(skin, MIN_SKIN, MAX_SKIN))
