"""The padded graph that every jaxtl model consumes.

A `Graph` is a plain named tuple of arrays (jraph style). Several structures are
batched into one graph; the last graph of a padded batch is a *padding graph*
that owns every padding node and padding edge, so all shapes are static.

Conventions (the same as mace-torch):
- `senders[e] = j`, `receivers[e] = i`; messages are summed onto receivers;
- the edge vector is `r_ij = positions[i] - positions[j] + unit_shifts[e] @ cell[g]`
  with g the graph of the edge (shifts are recomputed from integer `unit_shifts`
  so that stress can be taken by straining the cell).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Distinct elements a batch may hold for `Graph.elements` (the product basis then
# contracts the weights of just those elements, in one step).
ELEMENT_SLOTS = 8


class Graph(NamedTuple):
    """A batch of structures, possibly padded.

    Attributes:
        positions: [n_nodes, 3] in A.
        atomic_numbers: [n_nodes] int32 (0 for padding nodes).
        senders: [n_edges] int32, index of atom j.
        receivers: [n_edges] int32, index of atom i.
        unit_shifts: [n_edges, 3] integer periodic image of the sender (as float).
        cell: [n_graphs, 3, 3] in A, rows are lattice vectors.
        node_graph: [n_nodes] int32, graph index of each node.
        n_node: [n_graphs] int32, number of nodes of each graph.
        head: [n_graphs] int32, model head of each graph (0 for single-head models).
        node_mask: [n_nodes] bool, False for padding nodes.
        graph_mask: [n_graphs] bool, False for padding graphs.
        neighbours: [n_nodes, K] int32 or None: the ids of the edges each node
            receives, then n_edges in the unused slots (padding edges are left out).
            Built by `pad_batch`; the model then sums messages over K without a
            scatter. None: the model scatters over `receivers` instead.
        elements: [ELEMENT_SLOTS] int32 or None: the distinct atomic numbers of the
            real nodes, ascending, then 0. None when there are more than
            ELEMENT_SLOTS (or not known): the model then finds them under jit.
        edge_pairs: [2, n_edges // 2] int32 or None: each real edge j -> i (shift S)
            with its reverse i -> j (shift -S), as two edge ids, the smaller first;
            n_edges in unused columns and for an edge without a reverse. Both edges
            of a pair have the same length, so the model runs the radial MLP once per
            pair. Built by `pad_batch` (`edge_pairs`); None: once per edge.
    """

    positions: jnp.ndarray
    atomic_numbers: jnp.ndarray
    senders: jnp.ndarray
    receivers: jnp.ndarray
    unit_shifts: jnp.ndarray
    cell: jnp.ndarray
    node_graph: jnp.ndarray
    n_node: jnp.ndarray
    head: jnp.ndarray
    node_mask: jnp.ndarray
    graph_mask: jnp.ndarray
    neighbours: jnp.ndarray | None = None
    elements: jnp.ndarray | None = None
    edge_pairs: jnp.ndarray | None = None

    @property
    def n_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def n_nodes(self) -> int:
        return self.positions.shape[0]

    @property
    def n_edges(self) -> int:
        return self.senders.shape[0]


def edge_vectors(graph: Graph, positions=None, cell=None) -> jnp.ndarray:
    """Edge vectors r_ij = x_i - x_j + S_ij @ cell, [n_edges, 3] in A.

    `positions` and `cell` may be given to differentiate through them (forces,
    stress); they default to the graph's own.
    """
    positions = graph.positions if positions is None else positions
    cell = graph.cell if cell is None else cell
    edge_graph = graph.node_graph[graph.senders]
    shifts = jnp.einsum("ei,eij->ej", graph.unit_shifts.astype(positions.dtype), cell[edge_graph])
    return positions[graph.receivers] - positions[graph.senders] + shifts


def to_numpy(graph: Graph) -> Graph:
    """A copy of `graph` with numpy leaves (for host-side inspection)."""
    return Graph(*(None if x is None else np.asarray(x) for x in graph))
