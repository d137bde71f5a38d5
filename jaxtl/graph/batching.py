"""Single graphs and padded batches with static shapes (host side, numpy).

A single structure is a `Batch` with one graph and no padding (`graph_from_configuration`).
`pad_batch` concatenates such items into a `Batch` of fixed shape
(n_node, n_edge, n_graph): the real graphs come first, then empty padding graphs, and the
LAST graph is a padding graph that owns every padding node and every padding edge.

Padding nodes have atomic number 0 and position 0. Padding edges join the first padding
node to itself with unit shift (1, 0, 0); padding graphs have cell (r_max + 1) * identity,
so every padding edge has length r_max + 1 > r_max and the MACE cutoff envelope makes
its message exactly zero. Masks are False and label weights 0 on padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from jaxtl.graph.graph import ELEMENT_SLOTS, Graph
from jaxtl.graph.io import Configuration
from jaxtl.graph.labels import Batch, Labels
from jaxtl.graph.neighbours import edge_keys, neighbour_list


class Budget(NamedTuple):
    """Static shape of a padded batch (padding included).

    `n_neighbour` is the width K of the neighbour matrix (`Graph.neighbours`); 0 lets
    `pad_batch` size it to the batch.
    """

    n_node: int
    n_edge: int
    n_graph: int
    n_neighbour: int = 0


def round_capacity(x: int, steps_per_octave: int = 4) -> int:
    """Smallest value >= x on a grid with `steps_per_octave` values per power of two.

    steps_per_octave=1 gives powers of two; 4 gives ..., 64, 80, 96, 112, 128, 160, ...
    (at most 25 % waste and four shapes per doubling of size).
    """
    x = max(int(x), 1)
    if steps_per_octave < 1 or steps_per_octave & (steps_per_octave - 1):
        raise ValueError(f"steps_per_octave must be a power of two, got {steps_per_octave}")
    exponent = max(math.floor(math.log2(x)) - int(math.log2(steps_per_octave)), 0)
    step = 2**exponent
    return -(-x // step) * step


def graph_from_configuration(
    config: Configuration,
    r_max: float,
    head_index: int = 0,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Batch:
    """One structure as an unpadded single-graph `Batch` of numpy arrays.

    Args:
        config: the structure and its labels.
        r_max: cutoff in A.
        head_index: index of the structure's head in the model's head list.
        edges: (senders, receivers, unit_shifts) when already known (a cache).

    Returns a `Batch` with n_graphs = 1, masks True and missing labels zero with
    weight 0. Shapes: positions [n, 3] A, cell [1, 3, 3] A, forces [n, 3] eV/A,
    energy [1] eV, stress [1, 3, 3] eV/A^3, virials [1, 3, 3] eV.
    """
    n = config.n_atoms
    if edges is None:
        edges = neighbour_list(config.positions, config.cell, config.pbc, r_max)
    senders, receivers, unit_shifts = edges
    graph = Graph(
        positions=np.asarray(config.positions, dtype=np.float64),
        atomic_numbers=np.asarray(config.atomic_numbers, dtype=np.int32),
        senders=np.asarray(senders, dtype=np.int32),
        receivers=np.asarray(receivers, dtype=np.int32),
        unit_shifts=np.asarray(unit_shifts, dtype=np.float64).reshape(-1, 3),
        cell=np.asarray(config.cell, dtype=np.float64)[None],
        node_graph=np.zeros(n, dtype=np.int32),
        n_node=np.array([n], dtype=np.int32),
        head=np.array([head_index], dtype=np.int32),
        node_mask=np.ones(n, dtype=bool),
        graph_mask=np.ones(1, dtype=bool),
    )

    def matrix(value):
        return np.zeros((1, 3, 3)) if value is None else np.asarray(value, dtype=np.float64)[None]

    labels = Labels(
        energy=np.array([0.0 if config.energy is None else config.energy], dtype=np.float64),
        forces=np.zeros((n, 3)) if config.forces is None else np.asarray(config.forces, dtype=np.float64),
        stress=matrix(config.stress),
        virials=matrix(config.virials),
        weight=np.array([config.weight], dtype=np.float64),
        energy_weight=np.array([config.energy_weight], dtype=np.float64),
        forces_weight=np.array([config.forces_weight], dtype=np.float64),
        stress_weight=np.array([config.stress_weight], dtype=np.float64),
        virials_weight=np.array([config.virials_weight], dtype=np.float64),
    )
    return Batch(graph, labels)


def max_in_degree(items: Sequence[Batch]) -> int:
    """The most edges any node of the items receives (0 without edges)."""
    return max((int(np.bincount(np.asarray(item.graph.receivers)).max(initial=0)) for item in items), default=0)


def neighbour_width(max_degree: int, steps_per_octave: int = 4, headroom: float = 0.0) -> int:
    """Width of the neighbour matrix for nodes of at most `max_degree` incoming edges:
    widened by the fraction `headroom`, rounded up by `round_capacity`."""
    return round_capacity(max(math.ceil(max_degree * (1 + headroom)), 1), steps_per_octave)


def neighbour_matrix(receivers: np.ndarray, n_node: int, n_edge: int, n_neighbour: int | None = None) -> np.ndarray:
    """The receiver-major edge ids `Graph.neighbours` [n_node, n_neighbour].

    receivers: [n_real_edges] of the real edges (padding edges are left out); slots a
    node does not fill hold `n_edge`. Within a node, edges keep their order.
    n_neighbour None or 0: `neighbour_width` of the largest in-degree.
    """
    receivers = np.asarray(receivers, np.int64)
    degree = np.bincount(receivers, minlength=n_node)
    if not n_neighbour:
        n_neighbour = neighbour_width(int(degree.max(initial=0)))
    if degree.size and degree.max(initial=0) > n_neighbour:
        node = int(np.argmax(degree))
        raise ValueError(
            f"node {node} receives {int(degree[node])} edges, more than the neighbour budget {n_neighbour}"
        )
    order = np.argsort(receivers, kind="stable")
    first = np.cumsum(degree) - degree
    slot = np.arange(len(receivers)) - first[receivers[order]]
    matrix = np.full((n_node, n_neighbour), n_edge, np.int32)
    matrix[receivers[order], slot] = order
    return matrix


def edge_pairs(senders, receivers, unit_shifts, n_edge: int) -> np.ndarray | None:
    """`Graph.edge_pairs` [2, n_edge // 2] of the real edges (padding edges are left out).

    senders, receivers: [n_real_edges]; unit_shifts: [n_real_edges, 3] integers (may
    be float). The reverse of edge j -> i with shift S is i -> j with shift -S. An
    edge whose reverse is missing (a list cut at r_max asymmetrically by round-off) is
    a pair of its own. None when an edge is listed twice or the pairs do not fit.
    """
    s = np.asarray(senders, np.int64)
    r = np.asarray(receivers, np.int64)
    shifts = np.rint(np.asarray(unit_shifts, np.float64)).astype(np.int64).reshape(-1, 3)
    n_real, n_pairs = len(s), n_edge // 2
    if n_real == 0:
        return np.full((2, n_pairs), n_edge, np.int32)
    n_nodes = int(max(s.max(), r.max())) + 1
    bound = int(np.abs(shifts).max())
    forward = edge_keys(s, r, shifts, n_nodes, bound)
    if forward is None:
        return None
    backward = edge_keys(r, s, -shifts, n_nodes, bound)
    if np.all(forward[1:] > forward[:-1]):  # neighbour_list's order: sorted, and no edge twice
        order, ordered = np.arange(n_real), forward
    else:
        order = np.argsort(forward, kind="stable")
        ordered = forward[order]
        if np.any(ordered[1:] == ordered[:-1]):
            return None
    # ascending queries: each binary search starts where the last ended (2-4x faster than unsorted)
    by_backward = np.argsort(backward)
    at = np.empty(n_real, np.int64)
    at[by_backward] = np.searchsorted(ordered, backward[by_backward])
    at = np.minimum(at, n_real - 1)
    reverse = np.where(ordered[at] == backward, order[at], -1)
    edges = np.arange(n_real)
    first = edges[(reverse < 0) | (edges < reverse)]
    if len(first) > n_pairs:
        return None
    pairs = np.full((2, n_pairs), n_edge, np.int32)
    pairs[0, : len(first)] = first
    pairs[1, : len(first)] = np.where(reverse[first] < 0, n_edge, reverse[first])
    return pairs


def element_list(atomic_numbers: np.ndarray) -> np.ndarray | None:
    """`Graph.elements`: the distinct atomic numbers, ascending, padded with 0 to
    ELEMENT_SLOTS; None when there are more."""
    present = np.unique(np.asarray(atomic_numbers, np.int32))
    present = present[present > 0]
    if len(present) > ELEMENT_SLOTS:
        return None
    return np.pad(present, (0, ELEMENT_SLOTS - len(present))).astype(np.int32)


def item_size(item: Batch) -> tuple[int, int]:
    """(n_nodes, n_edges) of an unpadded item."""
    return item.graph.positions.shape[0], item.graph.senders.shape[0]


def pad_batch(
    items: Sequence[Batch],
    n_node: int,
    n_edge: int,
    n_graph: int,
    r_max: float,
    dtype=np.float64,
    n_neighbour: int | None = None,
) -> Batch:
    """Concatenate unpadded items into one `Batch` of static shape.

    Args:
        items: unpadded `Batch`es (from `graph_from_configuration`), each with any
            number of graphs.
        n_node: nodes of the result; at least one more than the items hold.
        n_edge: edges of the result; at least as many as the items hold.
        n_graph: graphs of the result; at least one more than the items hold.
        r_max: the model cutoff in A (sets the length of padding edges).
        dtype: float dtype of positions, cell, shifts and labels.
        n_neighbour: width of the neighbour matrix `Graph.neighbours`; None or 0 sizes
            it to the items (`neighbour_width` of the largest in-degree).

    Returns a `Batch` whose last graph is the padding graph described in the module
    docstring.
    """
    nodes = sum(item.graph.positions.shape[0] for item in items)
    edges = sum(item.graph.senders.shape[0] for item in items)
    graphs = sum(item.graph.cell.shape[0] for item in items)
    if nodes + 1 > n_node or edges > n_edge or graphs + 1 > n_graph:
        raise ValueError(
            f"items need {nodes} nodes, {edges} edges, {graphs} graphs; budget "
            f"({n_node}, {n_edge}, {n_graph}) must leave one padding node and one padding graph"
        )
    pad_nodes, pad_edges, pad_graphs = n_node - nodes, n_edge - edges, n_graph - graphs

    node_offsets = np.cumsum([0] + [item.graph.positions.shape[0] for item in items])
    graph_offsets = np.cumsum([0] + [item.graph.cell.shape[0] for item in items])

    def cat(parts, pad_shape, fill, kind):
        arrays = [np.asarray(p, dtype=kind) for p in parts]
        arrays.append(np.full(pad_shape, fill, dtype=kind))
        return np.concatenate(arrays, axis=0)

    gs = [item.graph for item in items]
    ls = [item.labels for item in items]
    pad_cell = np.broadcast_to((r_max + 1.0) * np.eye(3), (pad_graphs, 3, 3))
    padding_node = nodes  # the first padding node, owned by the last graph
    pad_n_node = np.zeros(pad_graphs, dtype=np.int32)
    pad_n_node[-1] = pad_nodes
    pad_shift = np.zeros((pad_edges, 3))
    pad_shift[:, 0] = 1.0

    receivers = cat([g.receivers + o for g, o in zip(gs, node_offsets)], (pad_edges,), padding_node, np.int32)
    senders = cat([g.senders + o for g, o in zip(gs, node_offsets)], (pad_edges,), padding_node, np.int32)
    unit_shifts = np.concatenate([np.asarray(g.unit_shifts, dtype) for g in gs] + [pad_shift.astype(dtype)])
    graph = Graph(
        positions=cat([g.positions for g in gs], (pad_nodes, 3), 0.0, dtype),
        atomic_numbers=cat([g.atomic_numbers for g in gs], (pad_nodes,), 0, np.int32),
        senders=senders,
        receivers=receivers,
        unit_shifts=unit_shifts,
        cell=np.concatenate([np.asarray(g.cell, dtype) for g in gs] + [pad_cell.astype(dtype)]),
        node_graph=cat([g.node_graph + o for g, o in zip(gs, graph_offsets)], (pad_nodes,), n_graph - 1, np.int32),
        n_node=np.concatenate([np.asarray(g.n_node, np.int32) for g in gs] + [pad_n_node]),
        head=cat([g.head for g in gs], (pad_graphs,), 0, np.int32),
        node_mask=cat([g.node_mask for g in gs], (pad_nodes,), False, bool),
        graph_mask=cat([g.graph_mask for g in gs], (pad_graphs,), False, bool),
        neighbours=neighbour_matrix(receivers[:edges], n_node, n_edge, n_neighbour),
        elements=element_list(np.concatenate([np.asarray(g.atomic_numbers) for g in gs])),
        edge_pairs=edge_pairs(senders[:edges], receivers[:edges], unit_shifts[:edges], n_edge),
    )
    labels = Labels(
        energy=cat([l.energy for l in ls], (pad_graphs,), 0.0, dtype),
        forces=cat([l.forces for l in ls], (pad_nodes, 3), 0.0, dtype),
        stress=cat([l.stress for l in ls], (pad_graphs, 3, 3), 0.0, dtype),
        virials=cat([l.virials for l in ls], (pad_graphs, 3, 3), 0.0, dtype),
        **{
            name: cat([getattr(l, name) for l in ls], (pad_graphs,), 0.0, dtype)
            for name in ("weight", "energy_weight", "forces_weight", "stress_weight", "virials_weight")
        },
    )
    return Batch(graph, labels)


def pad_to_capacity(
    items: Sequence[Batch],
    r_max: float,
    steps_per_octave: int = 4,
    at_least: Budget | None = None,
    dtype=np.float64,
    neighbour_headroom: float = 0.0,
) -> tuple[Batch, Budget]:
    """Pad items to capacities rounded up by `round_capacity` (for inference and MD).

    The rounding keeps the number of distinct shapes (and so jit compilations) small
    when edge counts drift during MD. Passing the previous budget as `at_least` makes
    capacities never shrink, so a trajectory settles on one shape. `neighbour_headroom`
    widens the neighbour matrix beyond the largest in-degree by that fraction: in MD the
    in-degree drifts between neighbour-list rebuilds, and each new width compiles again.

    Returns (the padded `Batch`, the `Budget` used).
    """
    nodes = sum(item.graph.positions.shape[0] for item in items)
    edges = sum(item.graph.senders.shape[0] for item in items)
    graphs = sum(item.graph.cell.shape[0] for item in items)
    budget = Budget(
        n_node=round_capacity(nodes + 1, steps_per_octave),
        n_edge=round_capacity(max(edges, 1), steps_per_octave),
        n_graph=round_capacity(graphs + 1, steps_per_octave),
        n_neighbour=neighbour_width(max_in_degree(items), steps_per_octave, neighbour_headroom),
    )
    if at_least is not None:
        budget = Budget(*(max(a, b) for a, b in zip(budget, at_least)))
    return pad_batch(items, *budget[:3], r_max=r_max, dtype=dtype, n_neighbour=budget.n_neighbour), budget


def batch_atoms(atoms_list, r_max: float, dtype=np.float64, heads: Sequence[str] = ("Default",)) -> Batch:
    """ASE structures -> one padded `Batch` (labels, if any, from the atoms' results).

    The capacities are rounded up (`round_capacity`) so similar inputs share shapes.
    """
    from jaxtl.graph.io import configuration_from_atoms

    items = []
    for i, atoms in enumerate(atoms_list):
        config = configuration_from_atoms(atoms, source="<atoms>", index=i, min_distance=None, read_labels=False)
        head = atoms.info.get("head", heads[0])
        items.append(graph_from_configuration(config, r_max, list(heads).index(head) if head in heads else 0))
    batch, _ = pad_to_capacity(items, r_max, dtype=dtype)
    return batch
