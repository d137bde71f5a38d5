"""The exact graph cut out of the skin list under jit (jaxtl/md/exact_graph.py)."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from helpers import random_jaxtl_model  # noqa: E402

from jaxtl.graph.batching import graph_from_configuration, pad_batch  # noqa: E402
from jaxtl.graph.graph import edge_vectors  # noqa: E402
from jaxtl.graph.io import configuration_from_atoms  # noqa: E402
from jaxtl.graph.neighbours import neighbour_list  # noqa: E402
from jaxtl.md.chunk import make_force_fn  # noqa: E402
from jaxtl.md.exact_graph import ExactBudget, exact_budget, exact_graph, host_counts  # noqa: E402

R_MAX, SKIN = 4.0, 0.8


@pytest.fixture(scope="module")
def model():
    return random_jaxtl_model(
        seed=2,
        atomic_numbers=(8, 29),
        r_max=R_MAX,
        hidden_irreps="4x0e+4x1o",
        max_ell=2,
        correlation=(2, 2),
        num_interactions=2,
        radial_MLP=(8,),
    )


def skin_graph_and_moved():
    """A rattled Cu/O cell's padded skin graph (r_max + SKIN at the start), and positions
    moved by less than SKIN / 2 (float64 numpy)."""
    atoms = bulk("Cu", "fcc", a=3.9, cubic=True) * (2, 2, 1)
    atoms.numbers[::5] = 8
    atoms.rattle(0.1, seed=3)
    config = configuration_from_atoms(atoms, min_distance=None, read_labels=False)
    item = graph_from_configuration(config, R_MAX + SKIN)
    n_edges = len(item.graph.senders)
    graph = pad_batch([item], len(atoms) + 3, n_edges + 20, 2, r_max=R_MAX, n_neighbour=0).graph
    rng = np.random.default_rng(4)
    step = rng.normal(size=(len(atoms), 3))
    step *= 0.49 * SKIN / np.linalg.norm(step, axis=1, keepdims=True)  # every atom moves almost skin/2
    moved = np.asarray(graph.positions).copy()
    moved[: len(atoms)] += step
    return atoms, graph, moved


def lengths_at(graph, positions):
    return jnp.linalg.norm(edge_vectors(graph, jnp.asarray(positions)), axis=1)


def exact_at(graph, positions, budget):
    """(exact graph, counts) as numpy, computed under jit."""
    cut = jax.jit(lambda g, x: exact_graph(g, lengths_at(g, x), R_MAX, budget))
    exact, counts = cut(graph, positions)
    return jax.tree_util.tree_map(np.asarray, exact), np.asarray(counts)


def test_reverse_edges_have_bitwise_equal_lengths():
    """A pair is kept or cut as one: both of its edges have the same length to the bit."""
    _, graph, moved = skin_graph_and_moved()
    lengths = np.asarray(jax.jit(lengths_at)(graph, moved))
    pairs = np.asarray(graph.edge_pairs)
    both = pairs[1] < graph.n_edges
    assert both.sum() > 100
    assert np.array_equal(lengths[pairs[0][both]], lengths[pairs[1][both]])


def test_exact_graph_holds_the_pairs_closer_than_r_max(model):
    atoms, graph, moved = skin_graph_and_moved()
    n = len(atoms)
    counts = host_counts(graph._replace(positions=moved), R_MAX)
    budget = exact_budget(counts, None, (0.05, 0.1), 16)
    exact, got = exact_at(graph, moved, budget)
    np.testing.assert_array_equal(got, counts)  # the in-loop and host counts agree here

    # the same edge set as a list built from scratch at r_max
    s, r, shifts = neighbour_list(moved[:n], np.asarray(atoms.cell), atoms.pbc, R_MAX)
    real = slice(0, int(got[0]))
    ours = sorted(zip(exact.senders[real], exact.receivers[real], map(tuple, exact.unit_shifts[real].astype(int))))
    assert ours == sorted(zip(s, r, map(tuple, shifts)))
    # padding edges are the padding graph's: length r_max + 1
    lengths = np.asarray(lengths_at(exact, moved))
    np.testing.assert_allclose(lengths[int(got[0]) :], R_MAX + 1)

    # every kept edge once in the neighbour matrix, in its receiver's row
    rows = np.repeat(np.arange(exact.neighbours.shape[0]), exact.neighbours.shape[1])
    ids = exact.neighbours.ravel()
    used = ids < budget.n_edge
    assert sorted(ids[used]) == list(range(int(got[0])))
    np.testing.assert_array_equal(exact.receivers[ids[used]], rows[used])

    # every kept edge once in the pairs, with its reverse
    pairs = exact.edge_pairs
    listed = np.concatenate([pairs[0][pairs[0] < budget.n_edge], pairs[1][pairs[1] < budget.n_edge]])
    assert sorted(listed) == list(range(int(got[0])))
    both = pairs[1] < budget.n_edge
    np.testing.assert_array_equal(exact.senders[pairs[0][both]], exact.receivers[pairs[1][both]])
    np.testing.assert_array_equal(exact.unit_shifts[pairs[0][both]], -exact.unit_shifts[pairs[1][both]])


def test_exact_graph_gives_the_skin_graphs_forces(model):
    """The cut pairs carried exactly zero messages: energy and forces of the model on the
    exact graph are those on the full skin graph, to round-off."""
    _, graph, moved = skin_graph_and_moved()
    budget = exact_budget(host_counts(graph._replace(positions=moved), R_MAX), None, (0.05, 0.1), 16)
    exact, counts = exact_at(graph, moved, budget)
    assert counts[0] < np.asarray(graph.node_mask)[np.asarray(graph.senders)].sum()  # something was cut

    def forces(g):
        return jax.jit(lambda v, g, x: make_force_fn(model.module, v, g)(x))(model.variables, g, jnp.asarray(moved))

    e_skin, f_skin = forces(graph)
    e_exact, f_exact = forces(exact)
    np.testing.assert_allclose(e_exact, e_skin, rtol=0, atol=1e-10)
    np.testing.assert_allclose(f_exact, f_skin, rtol=0, atol=1e-10)


@pytest.mark.parametrize("short", ["edges", "neighbour width"])
def test_counts_name_an_overflow(short):
    """A budget one short in edges or in neighbour width: the counts (taken in full) say so."""
    _, graph, moved = skin_graph_and_moved()
    counts = host_counts(graph._replace(positions=moved), R_MAX)
    edges, degree = int(counts[0]), int(counts[1])
    budget = ExactBudget(edges - 1, degree) if short == "edges" else ExactBudget(edges, degree - 1)
    _, got = exact_at(graph, moved, budget)
    np.testing.assert_array_equal(got, counts)
    assert not budget.fits(got) and ExactBudget(edges, degree).fits(got)


def test_exact_budget_grows_and_never_shrinks():
    first = exact_budget([1000, 40, 500], None, (0.0, 0.0), 16)
    assert first.fits([1000, 40, 500]) and not first.fits([first.n_edge + 1, 40, 500])
    assert exact_budget([900, 30, 450], first, (0.5, 0.5), 16) == first
    grown = exact_budget([first.n_edge + 1, 30, 450], first, (0.1, 0.1), 16)
    assert grown.n_edge > first.n_edge and grown.n_neighbour == first.n_neighbour
