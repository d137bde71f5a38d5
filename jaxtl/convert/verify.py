"""Self-verification of a conversion: jaxtl against mace-torch on the same structures."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from jaxtl.graph.batching import batch_atoms


def verification_structures(atomic_numbers, r_max: float, seed: int = 0) -> list[Atoms]:
    """A periodic cell, a slab and a cluster made of the model's own elements."""
    rng = np.random.default_rng(seed)
    zs = list(atomic_numbers)

    def random_positions(n, box, min_dist=1.0):
        pos = []
        while len(pos) < n:
            p = rng.uniform(0, box, 3)
            if all(np.linalg.norm(p - q) > min_dist for q in pos):
                pos.append(p)
        return np.array(pos)

    n = max(8, min(len(zs), 16))
    numbers = [zs[i % len(zs)] for i in range(n)]
    box = (n * 12.0) ** (1 / 3)
    cell = np.diag([box, box * 1.1, box * 0.95]) + rng.normal(0, 0.2, (3, 3))
    bulk = Atoms(numbers=numbers, scaled_positions=rng.uniform(0, 1, (n, 3)), cell=cell, pbc=True)
    bulk.positions = random_positions(n, box * 0.9, 1.1)
    slab = Atoms(
        numbers=numbers[:6], positions=random_positions(6, 3.5, 1.1), cell=[5.0, 5.5, 20.0], pbc=(True, True, False)
    )
    cluster = Atoms(numbers=numbers[::-1][:7], positions=random_positions(7, 4.0, 1.1))
    return [bulk, slab, cluster]


def jaxtl_batch(atoms_list, r_max: float, dtype=np.float64):
    """The structures as one padded jaxtl batch."""
    return batch_atoms(atoms_list, r_max, dtype)


def compare(torch_out: dict, jax_out: dict, atoms_list) -> dict:
    """Largest differences (absolute and relative) of energy, forces, virials and stress.

    `energy_rel` is relative to the total energy, `interaction_energy_rel` to E - sum E0s;
    forces, virials and stress are relative to their largest reference component.
    """
    G = len(atoms_list)
    N = sum(len(a) for a in atoms_list)
    e_t, e_j = np.asarray(torch_out["energy"]), np.asarray(jax_out["energy"])[:G]
    f_t, f_j = np.asarray(torch_out["forces"]), np.asarray(jax_out["forces"])[:N]
    res = {
        "energy_abs": float(np.max(np.abs(e_t - e_j))),
        "energy_rel": float(np.max(np.abs(e_t - e_j) / np.maximum(np.abs(e_t), 1e-12))),
        "interaction_energy_rel": float(
            np.max(np.abs(e_t - e_j) / np.maximum(np.abs(np.asarray(torch_out["interaction_energy"])), 1e-12))
        ),
        "forces_abs": float(np.max(np.abs(f_t - f_j))),
        "forces_rel": float(np.max(np.abs(f_t - f_j)) / max(np.max(np.abs(f_t)), 1e-12)),
    }
    if "virials" in torch_out and "virials" in jax_out:
        v_t, v_j = np.asarray(torch_out["virials"]), np.asarray(jax_out["virials"])[:G]
        res["virials_abs"] = float(np.max(np.abs(v_t - v_j)))
        res["virials_rel"] = float(np.max(np.abs(v_t - v_j)) / max(np.max(np.abs(v_t)), 1e-12))
        full = [i for i, a in enumerate(atoms_list) if all(a.pbc)]
        if full:
            s_t = np.asarray(torch_out["stress"])[full]
            s_j = np.asarray(jax_out["stress"])[:G][full]
            res["stress_abs"] = float(np.max(np.abs(s_t - s_j)))
            res["stress_rel"] = float(np.max(np.abs(s_t - s_j)) / max(np.max(np.abs(s_t)), 1e-12))
    return res
