"""Small deterministic ASE structures for tests.

Every builder takes the atomic numbers to draw from (``numbers``: a sequence of Z; atoms
cycle through it in a seeded random order so every listed element appears when there are
enough atoms) and a ``seed``; the same arguments always give the same structure.
All structures have 5-30 atoms (defaults) and every interatomic distance (including periodic images)
above ``MIN_DIST`` A.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms

MIN_DIST = 0.8  # A; every builder guarantees all pair distances are above this


def _species(numbers: Sequence[int], n: int, rng: np.random.Generator) -> np.ndarray:
    numbers = np.asarray(list(numbers), dtype=int)
    if numbers.size == 0:
        raise ValueError("numbers must name at least one element")
    reps = np.tile(numbers, n // len(numbers) + 1)[:n]
    return rng.permutation(reps)


def min_distance(atoms: Atoms) -> float:
    """Smallest distance between two atoms, periodic images included (inf for one atom)."""
    if len(atoms) < 2 and not atoms.pbc.any():
        return np.inf
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 6.0, self_interaction=False)
    return float(d.min()) if d.size else np.inf


def _random_points(
    n: int, cell: np.ndarray, pbc: Sequence[bool], rng: np.random.Generator, min_dist: float, max_tries: int = 20000
) -> np.ndarray:
    """Rejection-sample n points in the cell with all distances (images in the 27
    neighbouring cells included along periodic axes) above min_dist."""
    ranges = [(-2, -1, 0, 1, 2) if p else (0,) for p in pbc]
    images = np.array([[i, j, k] for i in ranges[0] for j in ranges[1] for k in ranges[2]], dtype=float) @ cell
    pts: list = []
    for _ in range(max_tries):
        if len(pts) == n:
            return np.asarray(pts)
        p = rng.uniform(0.0, 1.0, 3) @ cell
        others = [p + images[np.any(images != 0, axis=1)]] + (
            [np.asarray(pts)[:, None, :] + images[None]] if pts else []
        )
        cand = np.concatenate([o.reshape(-1, 3) for o in others])
        if cand.size and np.min(np.linalg.norm(cand - p, axis=1)) <= min_dist:
            continue
        pts.append(p)
    if len(pts) == n:
        return np.asarray(pts)
    raise RuntimeError("could not place atoms; cell too small for the requested count")


def bulk(numbers: Sequence[int], seed: int = 0, repeat=(2, 2, 1), a: float = 3.6, rattle: float = 0.15) -> Atoms:
    """Periodic cubic fcc supercell (4 atoms per repeat, 16 by default), cell strained by up
    to 3 % (non-symmetric, so triclinic), positions rattled."""
    from ase.build import bulk as ase_bulk

    rng = np.random.default_rng(seed)
    atoms = ase_bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    strain = np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    atoms.numbers = _species(numbers, len(atoms), rng)
    atoms.pbc = True
    _check(atoms)
    return atoms


def random_cell(numbers: Sequence[int], seed: int = 0, n_atoms: int = 12, density: float = 0.06) -> Atoms:
    """Periodic random triclinic cell with n_atoms randomly placed atoms (atoms/A^3 ~ density)."""
    rng = np.random.default_rng(seed)
    length = (n_atoms / density) ** (1.0 / 3.0)
    cell = np.eye(3) * length + rng.uniform(-0.15, 0.15, (3, 3)) * length
    pos = _random_points(n_atoms, cell, (True, True, True), rng, 1.5)
    atoms = Atoms(numbers=_species(numbers, n_atoms, rng), positions=pos, cell=cell, pbc=True)
    _check(atoms)
    return atoms


def small_triclinic(numbers: Sequence[int], seed: int = 0, n_atoms: int = 5, edge: float = 3.0) -> Atoms:
    """Skewed triclinic cell with edges ~ edge A (< r_max), so each atom sees many images.

    Angles are far from 90 degrees (about 60-75), exercising non-orthogonal shifts.
    """
    rng = np.random.default_rng(seed)
    a1 = np.array([1.0, 0.0, 0.0])
    a2 = np.array([0.45, 0.9, 0.0]) + rng.uniform(-0.05, 0.05, 3) * [1, 1, 0]
    a3 = np.array([0.35, 0.3, 0.88]) + rng.uniform(-0.05, 0.05, 3)
    cell = np.stack([a1, a2 / np.linalg.norm(a2), a3 / np.linalg.norm(a3)]) * edge
    cell = cell * (1.0 + rng.uniform(-0.05, 0.05, (3, 1)))
    pos = _random_points(n_atoms, cell, (True, True, True), rng, 1.3)
    atoms = Atoms(numbers=_species(numbers, n_atoms, rng), positions=pos, cell=cell, pbc=True)
    _check(atoms)
    return atoms


def slab(numbers: Sequence[int], seed: int = 0, vacuum: float = 8.0, rattle: float = 0.1) -> Atoms:
    """fcc(100) slab 2x2x3 (12 atoms) with pbc (T, T, F), vacuum along z, rattled."""
    from ase.build import fcc100

    rng = np.random.default_rng(seed)
    atoms = fcc100("Cu", size=(2, 2, 3), a=3.6, vacuum=vacuum)
    atoms.positions += rng.normal(0.0, rattle, atoms.positions.shape)
    atoms.numbers = _species(numbers, len(atoms), rng)
    atoms.pbc = (True, True, False)
    _check(atoms)
    return atoms


def cluster(numbers: Sequence[int], seed: int = 0, n_atoms: int = 10, radius: float = 3.2) -> Atoms:
    """Non-periodic random compact cluster inside a sphere of the given radius (no cell)."""
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n_atoms:
        p = rng.uniform(-radius, radius, 3)
        if np.linalg.norm(p) > radius:
            continue
        if pts and np.min(np.linalg.norm(np.asarray(pts) - p, axis=1)) <= 1.4:
            continue
        pts.append(p)
    atoms = Atoms(numbers=_species(numbers, n_atoms, rng), positions=np.asarray(pts), pbc=False)
    _check(atoms)
    return atoms


def with_isolated_atom(numbers: Sequence[int], seed: int = 0, r_max: float = 6.0, n_atoms: int = 8) -> Atoms:
    """Non-periodic cluster plus one atom (the last) farther than r_max + 1 A from all others.

    Under any MACE model the isolated atom has no edges, so its force is exactly zero and
    its node energy depends only on its element: E0 (+ shift for ScaleShiftMACE) when the
    first interaction is non-residual; with a residual first block (MP-0) the self-connection
    makes it E0 + shift + scale * (a constant per element).
    """
    rng = np.random.default_rng(seed)
    atoms = cluster(numbers, seed=seed, n_atoms=n_atoms - 1, radius=2.8)
    far = atoms.positions.max(axis=0) + r_max + 1.0 + rng.uniform(0.0, 0.5, 3)
    z = int(rng.choice(np.asarray(list(numbers))))
    atoms += Atoms(numbers=[z], positions=[far])
    dists = np.linalg.norm(atoms.positions[:-1] - atoms.positions[-1], axis=1)
    assert dists.min() > r_max, dists.min()
    _check(atoms)
    return atoms


def molecule(numbers: Sequence[int], seed: int = 0, name: str = "CH3CH2OH") -> Atoms:
    """An ASE g2 molecule (default ethanol), rattled; elements re-drawn from ``numbers``
    unless every element of the molecule is in ``numbers`` (then chemistry is kept)."""
    from ase.build import molecule as ase_molecule

    rng = np.random.default_rng(seed)
    atoms = ase_molecule(name)
    atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
    if not set(atoms.numbers.tolist()) <= set(int(z) for z in numbers):
        atoms.numbers = _species(numbers, len(atoms), rng)
    atoms.pbc = False
    _check(atoms)
    return atoms


def _check(atoms: Atoms) -> None:
    assert 1 <= len(atoms) <= 30, len(atoms)
    d = min_distance(atoms)
    assert d > MIN_DIST, f"min distance {d:.3f} A <= {MIN_DIST} A"


def all_structures(numbers: Sequence[int], seed: int = 0, r_max: float = 5.0) -> dict[str, Atoms]:
    """One of each kind, keyed by name (bulk, random_cell, triclinic, slab, cluster,
    isolated, molecule); ``r_max`` sets how far the isolated atom is placed."""
    return {
        "bulk": bulk(numbers, seed),
        "random_cell": random_cell(numbers, seed + 1),
        "triclinic": small_triclinic(numbers, seed + 2),
        "slab": slab(numbers, seed + 3),
        "cluster": cluster(numbers, seed + 4),
        "isolated": with_isolated_atom(numbers, seed + 5, r_max=r_max),
        "molecule": molecule(numbers, seed + 6),
    }


def real_model_structures(name: str) -> list:
    """Structures for the real model files: organic molecules ("spice") or H2 over Cu ("h2cu")."""
    from ase.build import fcc111
    from ase.build import molecule as ase_molecule

    if name == "spice":
        mols = [ase_molecule("CH3CH2OH"), ase_molecule("C6H6"), ase_molecule("CH3COOH")]
        mols[1].set_cell(np.eye(3) * 9.0)
        mols[1].pbc = True
        mols[1].center()
        return mols
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=0)
    top = slab.positions[:, 2].max()
    slab += Atoms("H2", positions=[[1.0, 1.0, top + 1.5], [1.0, 1.74, top + 1.5]])
    bulk = Atoms(
        "Cu4",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=np.eye(3) * 3.61,
        pbc=True,
    )
    bulk.rattle(0.05, seed=1)
    return [slab, bulk]
