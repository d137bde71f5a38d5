"""The graph of the pairs closer than r_max, cut out of the skin list inside a compiled MD step.

The engine's neighbour list holds every pair closer than r_max + skin when it was built, so
that it stays valid while the atoms move. The model's cost follows the edges, the neighbour
width K and the edge pairs it is given, and the skin's extra pairs (r_max <= r < r_max + skin)
carry exactly zero messages (the cutoff envelope vanishes there). So each step evaluates the
model on `exact_graph`: the skin graph's real edges closer than r_max at the step's positions,
renumbered in their order into capacities of their own (`ExactBudget`), with the neighbour
matrix and the edge pairs rewritten to match. The forces are those of the full skin graph to
round-off, at the cost of the exact list; a thicker skin then costs little per step.

Nothing is dropped silently: `exact_graph` also returns the counts it needed, and a step
whose counts exceed the capacities is not accepted (the host grows them and recompiles).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jaxtl.graph.batching import neighbour_width, round_capacity
from jaxtl.graph.graph import Graph, edge_vectors

# Entries of the counts `exact_graph` returns.
EDGES, DEGREE, PAIRS = 0, 1, 2


class ExactBudget(NamedTuple):
    """Capacities of the exact graph: `n_edge` edges (padding included), `n_edge // 2` edge
    pairs (as `pad_batch`) and a neighbour matrix of width `n_neighbour`."""

    n_edge: int
    n_neighbour: int

    @property
    def n_pairs(self) -> int:
        return self.n_edge // 2

    @property
    def limits(self) -> tuple[int, int, int]:
        """The bounds of `exact_graph`'s counts (edges, largest in-degree, pairs)."""
        return self.n_edge, self.n_neighbour, self.n_pairs

    def fits(self, counts) -> bool:
        """Whether `counts` ([3]: edges, largest in-degree, pairs) fit these capacities."""
        return bool(np.all(np.asarray(counts) <= np.asarray(self.limits)))


def exact_budget(counts, previous: ExactBudget | None, headroom: tuple[float, float], steps: int) -> ExactBudget:
    """`previous` while `counts` ([3]: edges, largest in-degree, pairs) fit it, else capacities
    widened by `headroom` (edges, neighbour width) and rounded up on a grid of `steps` values per
    doubling, never below `previous`."""
    counts = [int(c) for c in counts]
    if previous is not None and previous.fits(counts):
        return previous
    previous = previous or ExactBudget(0, 0)
    edges = max(counts[EDGES], 2 * counts[PAIRS])  # each pair column is sized from the edges
    return ExactBudget(
        n_edge=max(round_capacity(math.ceil(edges * (1 + headroom[0])), steps), previous.n_edge),
        n_neighbour=max(neighbour_width(counts[DEGREE], steps, headroom[1]), previous.n_neighbour),
    )


def host_counts(graph: Graph, r_max: float) -> np.ndarray:
    """[3] int (edges, largest in-degree, pairs) of the pairs of a padded numpy `graph` closer
    than `r_max` at its positions; pairs counted as half the edges (a full list is symmetric)."""
    vectors = np.asarray(edge_vectors(graph))
    kept = np.asarray(graph.node_mask)[np.asarray(graph.senders)] & (np.linalg.norm(vectors, axis=1) < r_max)
    degree = np.bincount(np.asarray(graph.receivers)[kept], minlength=1).max()
    n_edges = int(kept.sum())
    return np.array([n_edges, degree, (n_edges + 1) // 2])


def exact_graph(graph: Graph, lengths: jnp.ndarray, r_max: float, budget: ExactBudget) -> tuple[Graph, jnp.ndarray]:
    """The edges of `graph` closer than `r_max`, as a graph of capacities `budget` (jit-able).

    graph: padded (`pad_batch`); lengths: [n_edges] in A,
    the edge lengths at the positions the result is for. Kept edges keep their order; padding
    edges join the first padding node to itself with shift (1, 0, 0), as `pad_batch` makes them
    (length r_max + 1 in the padding graph's cell). A pair is kept when either edge is; one whose
    other edge was cut becomes a pair of its own.

    Returns (the exact graph, counts [3] int32: kept edges, the largest kept in-degree, kept
    pairs; 0 for a layout the graph lacks: `neighbours` or `edge_pairs` None stay None). Where
    a count exceeds its capacity the graph lacks edges: the caller must not use it.
    """
    n_edges, n_exact = graph.n_edges, budget.n_edge
    keep = graph.node_mask[graph.senders] & (lengths < r_max)
    rank = jnp.cumsum(keep, dtype=jnp.int32) - 1
    # the exact id of each skin edge, n_exact for a cut one; id n_edges (an empty slot) -> n_exact
    new_id = jnp.where(keep & (rank < n_exact), rank, n_exact)
    new_id = jnp.concatenate([new_id, jnp.array([n_exact], jnp.int32)])
    padding_node = jnp.argmin(graph.node_mask).astype(jnp.int32)

    def compact(values, fill):
        empty = jnp.full((n_exact + 1,) + values.shape[1:], fill, values.dtype)
        return empty.at[new_id[:n_edges]].set(values)[:n_exact]

    pad_shift = jnp.zeros((3,), graph.unit_shifts.dtype).at[0].set(1)
    shifts = compact(graph.unit_shifts, 0)
    n_kept = jnp.sum(keep, dtype=jnp.int32)
    shifts = jnp.where(jnp.arange(n_exact)[:, None] < n_kept, shifts, pad_shift)
    neighbours, degree, pairs, n_pairs = None, jnp.zeros((1,), jnp.int32), None, jnp.int32(0)
    if graph.neighbours is not None:
        neighbours, degree = _compact_rows(new_id[graph.neighbours], n_exact, budget.n_neighbour)
    if graph.edge_pairs is not None:
        pairs, n_pairs = _compact_pairs(new_id[graph.edge_pairs], n_exact, budget.n_pairs)
    exact = graph._replace(
        senders=compact(graph.senders, padding_node),
        receivers=compact(graph.receivers, padding_node),
        unit_shifts=shifts,
        neighbours=neighbours,
        edge_pairs=pairs,
    )
    counts = jnp.stack([n_kept, jnp.max(degree), n_pairs]).astype(jnp.int32)
    return exact, counts


def _compact_rows(ids: jnp.ndarray, empty: int, width: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Rows of edge ids [n, K] (`empty` in unused slots) with their used slots moved to the
    front, in order, cut to `width`: ([n, width], [n] used slots of each row)."""
    used = ids < empty
    slot = jnp.cumsum(used, axis=1, dtype=jnp.int32) - 1
    slot = jnp.where(used & (slot < width), slot, width)  # column `width` collects the rest
    rows = jnp.arange(ids.shape[0])[:, None]
    out = jnp.full((ids.shape[0], width + 1), empty, ids.dtype).at[rows, slot].set(ids)
    return out[:, :width], jnp.sum(used, axis=1, dtype=jnp.int32)


def _compact_pairs(pairs: jnp.ndarray, empty: int, width: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Edge pairs [2, P] in exact ids (`empty` for a cut or absent edge) -> ([2, width] the
    pairs with an edge left, that edge first, in order; the number of such pairs)."""
    first, second = jnp.minimum(pairs[0], pairs[1]), jnp.maximum(pairs[0], pairs[1])
    live = first < empty
    column = jnp.cumsum(live, dtype=jnp.int32) - 1
    column = jnp.where(live & (column < width), column, width)
    out = jnp.full((2, width + 1), empty, pairs.dtype).at[:, column].set(jnp.stack([first, second]))
    return out[:, :width], jnp.sum(live, dtype=jnp.int32)
