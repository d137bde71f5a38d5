"""Reference labels that travel with a padded `Graph` during training."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jaxtl.graph.graph import Graph


class Labels(NamedTuple):
    """DFT (or teacher) labels of a padded batch.

    Missing labels are zero with a zero weight, so every batch has the same
    pytree structure whatever the dataset holds.

    Attributes:
        energy: [n_graphs] total energy in eV.
        forces: [n_nodes, 3] in eV/A.
        stress: [n_graphs, 3, 3] in eV/A^3 (ASE sign convention).
        virials: [n_graphs, 3, 3] in eV.
        weight: [n_graphs] per-structure weight (config_weight x config_type weight); 0 for padding.
        energy_weight: [n_graphs] 1 where an energy label exists, else 0 (times config_energy_weight).
        forces_weight: [n_graphs] likewise for forces (broadcast to the graph's nodes).
        stress_weight: [n_graphs] likewise for stress.
        virials_weight: [n_graphs] likewise for virials.
    """

    energy: jnp.ndarray
    forces: jnp.ndarray
    stress: jnp.ndarray
    virials: jnp.ndarray
    weight: jnp.ndarray
    energy_weight: jnp.ndarray
    forces_weight: jnp.ndarray
    stress_weight: jnp.ndarray
    virials_weight: jnp.ndarray


class Batch(NamedTuple):
    """A padded graph with its labels."""

    graph: Graph
    labels: Labels
