"""Edge and node chunking change nothing: chunked and single-step messages and products agree."""

import numpy as np
from ase.build import bulk

from helpers import random_jaxtl_model
from jaxtl.graph.batching import graph_from_configuration, pad_batch
from jaxtl.graph.io import configuration_from_atoms
from jaxtl.model import product, tensor_product


def _predict(monkeypatch, edge_chunk: int, node_chunk: int):
    monkeypatch.setattr(tensor_product, "EDGE_CHUNK", edge_chunk)
    monkeypatch.setattr(product, "NODE_CHUNK", node_chunk)
    model = random_jaxtl_model(seed=7, hidden_irreps="4x0e+4x1o", max_ell=2, correlation=(3, 2), radial_MLP=(8,),
                               atomic_numbers=(8, 29))
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 1, 1))
    atoms.rattle(0.1, seed=1)
    atoms.numbers[[1, 6]] = 8
    item = graph_from_configuration(configuration_from_atoms(atoms, read_labels=False), model.config.r_max)
    batch = pad_batch([item], len(atoms) + 3, item.graph.senders.shape[0] + 11, 2, r_max=model.config.r_max)
    return model.predict(batch.graph), len(atoms), item.graph.senders.shape[0]


def test_chunked_messages_and_products_match_single_step(monkeypatch):
    one, n, n_edges = _predict(monkeypatch, edge_chunk=10**6, node_chunk=10**6)
    many, _, _ = _predict(monkeypatch, edge_chunk=7, node_chunk=3)  # uneven: padded last chunks
    assert n_edges > 7 * 10 and n > 3 * 3  # many chunks of both kinds
    np.testing.assert_allclose(many["energy"][0], one["energy"][0], rtol=1e-12)
    np.testing.assert_allclose(many["forces"][:n], one["forces"][:n], atol=1e-12)
    np.testing.assert_allclose(many["stress"][0], one["stress"][0], atol=1e-12)
