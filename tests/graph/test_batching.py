"""Padded batches: static shapes, masks, and a padding graph the model cannot see."""

import dataclasses

import numpy as np
import pytest

from jaxtl.graph import (
    Configuration,
    edge_vectors,
    graph_from_configuration,
    pad_batch,
    pad_to_capacity,
    round_capacity,
)
from jaxtl.graph.batching import Budget

R_MAX = 4.0
RNG = np.random.default_rng(0)


def random_config(n_atoms, periodic=True, forces=True):
    cell = 5.0 * np.eye(3) if periodic else np.zeros((3, 3))
    return Configuration(
        atomic_numbers=RNG.integers(1, 10, n_atoms).astype(np.int32),
        positions=RNG.random((n_atoms, 3)) * 5.0,
        cell=cell,
        pbc=(periodic,) * 3,
        energy=float(RNG.normal()),
        forces=RNG.normal(size=(n_atoms, 3)) if forces else None,
        stress=np.eye(3) if periodic else None,
        weight=1.0,
        energy_weight=1.0,
        forces_weight=1.0 if forces else 0.0,
        stress_weight=1.0 if periodic else 0.0,
    )


@pytest.fixture
def items():
    configs = [random_config(3), random_config(7, periodic=False, forces=False), random_config(1)]
    return [graph_from_configuration(c, R_MAX, head_index=i % 2) for i, c in enumerate(configs)]


def test_single_graph(items):
    graph, labels = items[0]
    assert graph.cell.shape == (1, 3, 3) and graph.n_node.tolist() == [3]
    assert np.all(np.linalg.norm(np.asarray(edge_vectors(graph)), axis=1) < R_MAX)
    assert labels.stress.shape == (1, 3, 3) and labels.forces.shape == (3, 3)
    graph, labels = items[1]
    assert labels.forces_weight.tolist() == [0.0] and np.all(labels.forces == 0)


def test_padding_invariants(items):
    nodes = sum(len(i.graph.positions) for i in items)
    edges = sum(len(i.graph.senders) for i in items)
    n_node, n_edge, n_graph = nodes + 5, edges + 7, 6
    graph, labels = pad_batch(items, n_node, n_edge, n_graph, R_MAX)
    assert graph.positions.shape == (n_node, 3) and graph.senders.shape == (n_edge,)
    assert graph.cell.shape == (n_graph, 3, 3) and labels.energy.shape == (n_graph,)
    assert graph.node_mask.tolist() == [True] * nodes + [False] * 5
    assert graph.graph_mask.tolist() == [True] * 3 + [False] * 3
    assert graph.n_node.tolist() == [3, 7, 1, 0, 0, 5]
    assert graph.n_node.sum() == n_node
    np.testing.assert_array_equal(graph.node_graph, np.repeat(np.arange(n_graph), graph.n_node))
    assert graph.head.tolist() == [0, 1, 0, 0, 0, 0]
    assert np.all(graph.atomic_numbers[nodes:] == 0) and np.all(graph.positions[nodes:] == 0)
    # every edge stays inside one graph; padding edges belong to the last graph
    edge_graph = graph.node_graph[graph.senders]
    np.testing.assert_array_equal(edge_graph, graph.node_graph[graph.receivers])
    assert np.all(edge_graph[edges:] == n_graph - 1)
    lengths = np.linalg.norm(np.asarray(edge_vectors(graph)), axis=1)
    assert np.all(lengths[:edges] < R_MAX)
    assert np.all(lengths[edges:] >= R_MAX)  # the cutoff envelope is exactly zero there
    # real edges are the single graphs' edges, shifted
    np.testing.assert_allclose(
        lengths[:edges], np.concatenate([np.linalg.norm(np.asarray(edge_vectors(i.graph)), axis=1) for i in items])
    )
    for name in ("weight", "energy_weight", "forces_weight", "stress_weight", "virials_weight"):
        assert np.all(getattr(labels, name)[3:] == 0)
    assert labels.stress_weight[:3].tolist() == [1.0, 0.0, 1.0]
    assert np.all(labels.forces[nodes:] == 0)


def test_budget_must_leave_padding(items):
    nodes = sum(len(i.graph.positions) for i in items)
    edges = sum(len(i.graph.senders) for i in items)
    pad_batch(items, nodes + 1, edges, 4, R_MAX)
    with pytest.raises(ValueError, match="padding node"):
        pad_batch(items, nodes, edges, 4, R_MAX)
    with pytest.raises(ValueError, match="padding graph"):
        pad_batch(items, nodes + 1, edges, 3, R_MAX)
    with pytest.raises(ValueError):
        pad_batch(items, nodes + 1, edges - 1, 4, R_MAX)


def test_dtype(items):
    graph, labels = pad_batch(items, 20, 500, 4, R_MAX, dtype=np.float32)
    assert graph.positions.dtype == np.float32 and labels.forces.dtype == np.float32
    assert graph.senders.dtype == np.int32 and graph.node_mask.dtype == bool


def test_round_capacity():
    assert [round_capacity(x) for x in (1, 4, 5, 9, 17, 100, 1000, 1025)] == [1, 4, 5, 10, 20, 112, 1024, 1280]
    assert [round_capacity(x, 1) for x in (1, 3, 5, 64, 65)] == [1, 4, 8, 64, 128]
    values = {round_capacity(x) for x in range(1000, 4001)}
    assert len(values) <= 9  # four per doubling


def test_pad_to_capacity_is_stable_for_md():
    config = random_config(40)
    shapes = set()
    budget = None
    for step in range(20):  # a jittering structure: edge counts drift
        moved = dataclasses.replace(config, positions=config.positions + 0.05 * step * RNG.normal(size=(40, 3)))
        batch, budget = pad_to_capacity([graph_from_configuration(moved, R_MAX)], R_MAX, at_least=budget)
        shapes.add(budget)
        assert batch.graph.positions.shape[0] == budget.n_node
    assert len(shapes) <= 3
    assert budget.n_node == round_capacity(41) and budget.n_graph == 2
    assert isinstance(budget, Budget)


def test_element_list_names_up_to_eight_elements():
    from jaxtl.graph.batching import element_list
    from jaxtl.graph.graph import ELEMENT_SLOTS

    listed = element_list(np.array([29, 1, 29, 8, 0]))  # 0: a padding node
    np.testing.assert_array_equal(listed, [1, 8, 29] + [0] * (ELEMENT_SLOTS - 3))
    assert element_list(np.arange(1, ELEMENT_SLOTS + 2)) is None  # nine elements: the model searches


def test_stacked_batches_drop_the_element_list_if_one_lacks_it():
    from jaxtl.graph.labels import Batch
    from jaxtl.train.parallel import stack_batches

    items = [graph_from_configuration(random_config(6), R_MAX)]
    batch = pad_batch(items, 8, 200, 2, R_MAX, n_neighbour=32)
    assert batch.graph.elements is not None
    lacking = Batch(batch.graph._replace(elements=None), batch.labels)
    assert stack_batches([batch, batch]).graph.elements.shape == (2, batch.graph.elements.shape[0])
    assert stack_batches([batch, lacking]).graph.elements is None


def test_edge_pairs_join_each_edge_with_its_reverse(items):
    edges = sum(len(i.graph.senders) for i in items)
    graph, _ = pad_batch(items, 20, edges + 9, 6, R_MAX)
    pairs = np.asarray(graph.edge_pairs)
    n_edge = graph.senders.shape[0]
    assert pairs.shape == (2, n_edge // 2)
    used = pairs[0] < n_edge
    first, second = pairs[0][used], pairs[1][used]
    assert (second < n_edge).all()  # the neighbour list is symmetric: no edge alone
    np.testing.assert_array_equal(np.sort(np.concatenate([first, second])), np.arange(edges))  # each edge once
    np.testing.assert_array_equal(graph.senders[first], graph.receivers[second])
    np.testing.assert_array_equal(graph.receivers[first], graph.senders[second])
    np.testing.assert_array_equal(graph.unit_shifts[first], -graph.unit_shifts[second])
    lengths = np.linalg.norm(np.asarray(edge_vectors(graph)), axis=1)
    np.testing.assert_array_equal(lengths[first], lengths[second])  # bit for bit


def test_edge_pairs_of_an_asymmetric_or_repeated_edge_list():
    from jaxtl.graph.batching import edge_pairs

    senders, receivers = np.array([0, 1, 0, 2]), np.array([1, 0, 2, 1])
    shifts = np.array([[1, 0, 0], [-1, 0, 0], [0, 0, 0], [0, 0, 0]])
    # 0 -> 1 and 1 -> 0 are a pair; 0 -> 2 and 2 -> 1 have no reverse: pairs of their own
    pairs = edge_pairs(senders, receivers, shifts, n_edge=8)
    np.testing.assert_array_equal(pairs, [[0, 2, 3, 8], [1, 8, 8, 8]])
    assert edge_pairs(senders, receivers, shifts, n_edge=5) is None  # three pairs in two columns
    shifts[1] = [1, 0, 0]  # same ends, shifts not opposite: no pair
    np.testing.assert_array_equal(edge_pairs(senders, receivers, shifts, n_edge=8)[1], [8, 8, 8, 8])
    repeated = edge_pairs(np.array([0, 0, 1]), np.array([1, 1, 0]), np.zeros((3, 3)), n_edge=8)
    assert repeated is None


def test_stacked_batches_drop_the_edge_pairs_if_one_lacks_them():
    from jaxtl.graph.labels import Batch
    from jaxtl.train.parallel import stack_batches

    batch = pad_batch([graph_from_configuration(random_config(6), R_MAX)], 8, 200, 2, R_MAX, n_neighbour=32)
    lacking = Batch(batch.graph._replace(edge_pairs=None), batch.labels)
    assert stack_batches([batch, batch]).graph.edge_pairs.shape == (2, 2, 100)
    assert stack_batches([lacking, batch]).graph.edge_pairs is None
