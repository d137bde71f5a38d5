"""The neighbour-list skin an MD run uses when the user gives none, chosen from the system.

The compiled MD evaluates the model on every pair closer than r_max + skin, and the model's
cost grows with those edges, roughly as ((r_max + skin) / r_max)^3 in a dense system. A
thinner skin costs less per step but is used up sooner: the list is rebuilt (on the host,
between compiled chunks) once an atom has moved skin/2 from where the list was built.
The rule sizes the skin so that the fastest atom, moving straight on, needs
`STEPS_PER_REBUILD` steps to use up half of it. Atoms in a solid or a molecule vibrate
rather than fly, so the observed time between rebuilds is longer than that.

The speed is the larger of the fastest mobile atom's at the start and the root mean square
thermal speed of the lightest mobile element at the run's temperature (so a start at rest
under a thermostat gets a skin for the speeds it will reach), and the skin is kept between
`MIN_SKIN` and `MAX_SKIN`.
"""

from __future__ import annotations

import numpy as np
from ase import units

# Steps between rebuilds the skin is sized for. Each 0.1 A of skin adds ~6 % edges at
# r_max = 5 A, so ~6 % to every step; each rebuild ends a compiled chunk and makes a host
# round trip (vesin, padding, a new graph on the device, the chunk's frames read back), so
# a much thinner skin costs more in rebuilds than it saves in edges
# (benchmarks/results/md_skin_sweep_cpu_h2cu224.md sweeps it).
STEPS_PER_REBUILD = 8
# A, the skin's bounds: below MIN_SKIN the list is rebuilt on vibrations alone (a thermal
# amplitude is ~0.05-0.1 A); at MAX_SKIN the list holds ~1.7x the exact edges (r_max 5 A).
MIN_SKIN, MAX_SKIN = 0.2, 1.0


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
