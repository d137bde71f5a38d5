"""Energy, forces, stress and virials of a MACE as pure, jit-able functions."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtl.graph.graph import Graph


def strain_graph(graph: Graph, strain: jnp.ndarray) -> Graph:
    """Apply a symmetric strain `[n_graphs, 3, 3]` to positions and cell (mace's displacement trick)."""
    sym = 0.5 * (strain + jnp.swapaxes(strain, -1, -2))
    positions = graph.positions + jnp.einsum("ni,nij->nj", graph.positions, sym[graph.node_graph])
    cell = graph.cell + jnp.einsum("gai,gij->gaj", graph.cell, sym)
    return graph._replace(positions=positions, cell=cell)


def make_predict(model) -> Callable:
    """Return `predict(variables, graph, compute_stress=True) -> dict`.

    Outputs: `energy [n_graphs]` (eV), `node_energy [n_nodes]` (eV),
    `forces [n_nodes, 3]` = -dE/dr (eV/A), and with `compute_stress`:
    `virials [n_graphs, 3, 3]` = -dE/d(strain) (eV) and `stress [n_graphs, 3, 3]`
    = -virials / |det cell| (eV/A^3; zero where the cell has no volume).
    Padding nodes and graphs give zeros.
    """

    def predict(variables, graph: Graph, compute_stress: bool = True) -> dict:
        dtype = jnp.dtype(model.config.dtype)
        graph = graph._replace(positions=graph.positions.astype(dtype), cell=graph.cell.astype(dtype))
        strain = jnp.zeros((graph.cell.shape[0], 3, 3), dtype)

        def total_energy(positions, strain):
            g = graph._replace(positions=positions)
            if compute_stress:
                g = strain_graph(g, strain)
            out = model.apply(variables, g)
            return jnp.sum(out["energy"] * graph.graph_mask), out

        (_, out), (g_pos, g_strain) = jax.value_and_grad(total_energy, argnums=(0, 1), has_aux=True)(
            graph.positions, strain
        )
        result = {
            "energy": out["energy"] * graph.graph_mask,
            "node_energy": out["node_energy"],
            "interaction_energy": out["interaction_energy"] * graph.graph_mask,
            "forces": -g_pos * graph.node_mask[:, None],
        }
        if compute_stress:
            volume = jnp.abs(jnp.linalg.det(graph.cell))
            safe = jnp.where(volume > 0, volume, 1.0)
            result["virials"] = -g_strain
            result["stress"] = jnp.where((volume > 0)[:, None, None], g_strain / safe[:, None, None], 0.0)
        return result

    return predict
