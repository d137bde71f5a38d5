"""H atoms over Cu(100): the starting structures of the distillation tests, and their files."""

import ase.io
import numpy as np
from ase import Atoms
from ase.build import fcc100


def h_on_cu(seed: int, rattle: float = 0.03, periodic: bool = True) -> Atoms:
    """One H atom 1.8 A above a rattled 2x2x2 Cu(100) slab, at a seeded lateral site (9 atoms);
    periodic=False: periodic in the surface plane only (no stress labels, so less to compile)."""
    rng = np.random.default_rng(seed)
    atoms = fcc100("Cu", (2, 2, 2), a=3.6, vacuum=5.0, periodic=periodic)
    top = atoms.positions[:, 2].max()
    atoms += Atoms("H", positions=[[*rng.uniform(0, 3.6, 2), top + 1.8]])
    atoms.rattle(rattle, seed=seed)
    return atoms


def write_structures(path, structures):
    """Structures as an extended XYZ file (a DistillConfig names files); returns the path."""
    ase.io.write(path, structures, format="extxyz")
    return str(path)
