"""Edge and node chunking change nothing: chunked and single-step messages and products agree,
and so do the two message layouts (scatter over receivers, neighbour matrix) and the two
ways of finding the elements present (listed by the batch, or searched under jit)."""

import numpy as np
import pytest
from helpers import model_and_graph


def _predict(monkeypatch, edge_chunk: int, node_chunk: int, slots: int = 1024, layout: bool = False):
    """layout: keep the batch's neighbour matrix and element list (else drop both)."""
    model, graph, n, n_edges = model_and_graph(monkeypatch, edge_chunk, node_chunk, slots, layout)
    return model.predict(graph), n, n_edges


def _training_gradient(monkeypatch, slots: int, layout: bool, extra_edges: int = 11, pairs: bool = True):
    """d/dparams of an energy + force loss: the second derivative a training step takes."""
    import jax
    import jax.numpy as jnp

    from jaxtl.model import make_predict

    model, graph, n, _ = model_and_graph(monkeypatch, 10**6, 10**6, slots, layout, extra_edges, pairs)
    if layout:  # which one-step variant runs: the MLP over the edges only when they are fewer
        n_slots = graph.neighbours.shape[0] * graph.neighbours.shape[1]
        assert (graph.senders.shape[0] < n_slots) == (extra_edges < 100)
    predict = make_predict(model.module)

    def loss(params):
        out = predict({"params": params, "constants": model.constants}, graph, False)
        return jnp.sum(out["energy"] ** 2) + jnp.sum((out["forces"][:n] - 0.3) ** 2)

    return jax.jit(jax.grad(loss))(model.params)


def test_chunked_messages_and_products_match_single_step(monkeypatch):
    one, n, n_edges = _predict(monkeypatch, edge_chunk=10**6, node_chunk=10**6)
    many, _, _ = _predict(monkeypatch, edge_chunk=7, node_chunk=3)  # uneven: padded last chunks
    assert n_edges > 7 * 10 and n > 3 * 3  # many chunks of both kinds
    np.testing.assert_allclose(many["energy"][0], one["energy"][0], rtol=1e-12)
    np.testing.assert_allclose(many["forces"][:n], one["forces"][:n], atol=1e-12)
    np.testing.assert_allclose(many["stress"][0], one["stress"][0], atol=1e-12)


def test_neighbour_matrix_messages_match_scatter(monkeypatch):
    scatter, n, _ = _predict(monkeypatch, edge_chunk=10**6, node_chunk=10**6)
    _, graph, _, _ = model_and_graph(monkeypatch, 10**6, 10**6, 10**6, True)
    n_nodes, K = graph.neighbours.shape
    assert n_nodes == 15 and K > 5
    # all nodes in one step; one node per step; room for 6 nodes a step, so 3 steps,
    # filled evenly with 5 nodes each
    for slots in (10**6, 5, 6 * K):
        matrix, _, _ = _predict(monkeypatch, edge_chunk=10**6, node_chunk=10**6, slots=slots, layout=True)
        np.testing.assert_allclose(matrix["energy"][0], scatter["energy"][0], rtol=1e-12)
        np.testing.assert_allclose(matrix["forces"][:n], scatter["forces"][:n], atol=1e-12)
        np.testing.assert_allclose(matrix["stress"][0], scatter["stress"][0], atol=1e-12)


def test_training_gradient_same_in_every_message_layout(monkeypatch):
    """The one-step neighbour-matrix path moves the radial MLP's rows (of edges, or of edge
    pairs) into the slots with permutations whose transposes are hand-written
    (`_permute_rows`): second derivatives through them must equal the scatter path's and
    the multi-step path's."""
    import jax

    scatter = _training_gradient(monkeypatch, slots=1024, layout=False)
    # one step, the MLP over the edge pairs; over the edges (the permutation); over the
    # slots (an edge budget larger than nodes x K, no pairs); one node per step (gathers)
    for slots, extra_edges, pairs in ((10**6, 11, True), (10**6, 11, False), (10**6, 1000, False), (5, 11, True)):
        matrix = _training_gradient(monkeypatch, slots=slots, layout=True, extra_edges=extra_edges, pairs=pairs)
        for a, b in zip(jax.tree_util.tree_leaves(matrix), jax.tree_util.tree_leaves(scatter)):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert max(float(np.abs(a).max()) for a in jax.tree_util.tree_leaves(scatter)) > 1e-3


def test_neighbour_matrix_lists_each_real_edge_once():
    from jaxtl.graph.batching import neighbour_matrix

    receivers = np.array([2, 0, 2, 2, 1, 0])
    matrix = neighbour_matrix(receivers, n_node=4, n_edge=9, n_neighbour=4)
    assert matrix.shape == (4, 4)
    for node in range(4):
        listed = matrix[node][matrix[node] < 9]
        np.testing.assert_array_equal(listed, np.nonzero(receivers == node)[0])
    assert (matrix[3] == 9).all()
    with pytest.raises(ValueError, match="node 2 receives 3 edges"):
        neighbour_matrix(receivers, n_node=4, n_edge=9, n_neighbour=2)


def test_element_contraction_paths_agree():
    """The single-step path (few distinct elements) and the group scan give the same contraction."""
    import jax
    import jax.numpy as jnp

    from jaxtl.model.product import coupled_monomials, coupling_basis, element_contraction, symmetrize_U

    jax.config.update("jax_enable_x64", True)

    coupling = ((1, 0, 1), (1, 1, -1))
    factors, U_syms, Ws = [], [], []
    keys = iter(jax.random.split(jax.random.PRNGKey(0), 8))
    for nu in (3, 2, 1):
        keep = coupled_monomials(coupling, 1, -1, nu)
        U = jnp.asarray(coupling_basis(coupling, 1, -1, nu))
        U_syms.append(symmetrize_U(U, 4, nu, keep))
        Ws.append(jax.random.normal(next(keys), (12, U.shape[-1], 5), jnp.float64))
        factors.append((nu, keep))
    xc = jax.random.normal(next(keys), (5, 9, 4), jnp.float64)
    species = jnp.array([3, 7, 3, 11, 0, 7, 5, 5, 3])  # 5 distinct of 12 elements

    def run(present, group, elements=None):
        fn = lambda x: element_contraction(
            x, factors, U_syms, Ws, species, group=group, present=present, elements=elements
        )
        return fn(xc), jax.grad(lambda x: (fn(x) ** 2).sum())(xc)

    single, d_single = run(present=8, group=4)  # 5 <= 8: one step
    scanned, d_scanned = run(present=2, group=4)  # 5 > 2: the group scan
    listed, d_listed = run(present=2, group=4, elements=jnp.array([0, 3, 5, 7, 11, -1, -1, -1]))  # as the batch lists
    # reference: every node with its own element's weights, one node at a time
    ref = jnp.stack(
        [
            element_contraction(xc[:, i : i + 1], factors, U_syms, [W[s : s + 1] for W in Ws], jnp.zeros((1,), int))[
                :, 0
            ]
            for i, s in enumerate(species.tolist())
        ],
        axis=1,
    )
    np.testing.assert_allclose(single, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(scanned, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(listed, ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_single, d_scanned, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_listed, d_scanned, rtol=1e-10, atol=1e-12)


def test_radial_mlp_runs_once_per_edge_pair(monkeypatch):
    """With `Graph.edge_pairs` the radial MLP's first layer (6 Bessel functions in) takes
    one row per pair of opposite edges, n_edges / 2, instead of one per edge; the
    energies and forces agree to round-off."""
    import re

    import jax

    rows, outputs = {}, {}
    for pairs in (True, False):
        model, graph, n, _ = model_and_graph(monkeypatch, 10**6, 10**6, 10**6, layout=True, pairs=pairs)
        text = jax.jit(model.module.apply).lower(model.variables, graph).as_text()
        rows[pairs] = {int(m) for m in re.findall(r"dot_general[^\n]*\(tensor<(\d+)x6xf64>", text)}
        outputs[pairs] = model.predict(graph)
    n_edges = graph.senders.shape[0]
    assert rows == {True: {n_edges // 2}, False: {n_edges}}
    np.testing.assert_allclose(outputs[True]["energy"][0], outputs[False]["energy"][0], rtol=1e-13)
    np.testing.assert_allclose(outputs[True]["forces"][:n], outputs[False]["forces"][:n], atol=1e-13)
    np.testing.assert_allclose(outputs[True]["stress"][0], outputs[False]["stress"][0], atol=1e-13)


@pytest.mark.parametrize(
    "arch, per_step",
    [
        ({}, 5),
        (
            dict(
                apply_cutoff=False,
                distance_transform="Agnesi",
                radial_type="gaussian",
                interaction_cls_first="RealAgnosticInteractionBlock",
            ),
            4,
        ),
    ],
    ids=["residual-bessel-3-steps", "plain-first-agnesi-gaussian-cutoff-apart-4-steps-padded"],
)
def test_streamed_edge_embedding_matches_embedding_of_all_edges(monkeypatch, arch, per_step):
    """Large graphs embed the edges of each message step inside the loop
    (`mace.streams_edge_embedding`) and run the product basis there too; energies,
    forces and stress equal those of the whole-graph path (a step left out, or an empty
    slot not zeroed, changes them). 15 nodes, `per_step` a step."""
    from jaxtl.model import mace

    def predict(slots, threshold):
        monkeypatch.setattr(mace, "STREAM_EDGES", threshold)
        model, graph, n, _ = model_and_graph(monkeypatch, 10**6, 10**6, slots, True, **arch)
        assert graph.neighbours.shape[0] == 15
        streamed = mace.streams_edge_embedding(model.config, graph, "xla")
        return model.predict(graph), n, graph.neighbours.shape[1], streamed

    whole, n, K, streamed_whole = predict(10**6, 1 << 30)
    out, _, _, streamed = predict(per_step * K, 0)
    assert streamed and not streamed_whole
    np.testing.assert_allclose(out["energy"][0], whole["energy"][0], rtol=1e-12)
    np.testing.assert_allclose(out["forces"][:n], whole["forces"][:n], atol=1e-12)
    np.testing.assert_allclose(out["stress"][0], whole["stress"][0], atol=1e-12)
    assert np.abs(whole["forces"][:n]).max() > 1e-2


def test_streamed_paths_give_the_same_training_gradient(monkeypatch):
    """Second derivatives (d/dparams of a force loss) through the streamed embedding and the
    product basis in the message loop equal those of the whole-graph path: no NaN from the
    empty slots' stand-in vectors, nothing lost between steps."""
    import jax

    from jaxtl.model import mace

    monkeypatch.setattr(mace, "STREAM_EDGES", 1 << 30)
    whole = _training_gradient(monkeypatch, slots=10**6, layout=True)
    monkeypatch.setattr(mace, "STREAM_EDGES", 0)
    streamed = _training_gradient(monkeypatch, slots=5, layout=True)  # one node a step
    for a, b in zip(jax.tree_util.tree_leaves(streamed), jax.tree_util.tree_leaves(whole)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert max(float(np.abs(a).max()) for a in jax.tree_util.tree_leaves(whole)) > 1e-3
