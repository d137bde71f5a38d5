"""Small jaxtl-only models and graphs for model tests (no torch needed)."""

import jax
import numpy as np

from jaxtl.api import build_loaded_model
from jaxtl.model import MACEConfig
from jaxtl.model.mace import init_variables


def random_jaxtl_model(seed=0, **overrides):
    """A freshly initialised float64 jaxtl MACE with non-trivial E0s, scale and shift."""
    jax.config.update("jax_enable_x64", True)
    kwargs = dict(
        atomic_numbers=(1, 8, 29),
        r_max=4.0,
        num_bessel=6,
        hidden_irreps="8x0e+8x1o+8x2e",
        max_ell=2,
        correlation=(3, 2),
        avg_num_neighbors=(6.0, 6.0),
        radial_MLP=(16, 16),
        MLP_irreps="8x0e",
        dtype="float64",
    )
    kwargs.update(overrides)
    config = MACEConfig(**kwargs)
    variables = init_variables(config, seed)
    variables = {"params": variables["params"], "constants": dict(variables["constants"])}
    H, Z = len(config.heads), config.num_elements
    variables["constants"]["atomic_energies"] = np.arange(1, Z + 1, dtype=float)[None].repeat(H, 0) * -1.5
    variables["constants"]["scale"] = np.full((H,), 1.3)
    variables["constants"]["shift"] = np.full((H,), 0.1)
    return build_loaded_model(config, variables)


def model_and_graph(
    monkeypatch,
    edge_chunk: int,
    node_chunk: int,
    slots: int,
    layout: bool,
    extra_edges: int = 11,
    pairs: bool = True,
    **model_overrides,
):
    """A 3x1x1 Cu/O cell and a small two-layer model, with the message and product chunk
    sizes set (through `monkeypatch`) and a padded graph; layout: keep the batch's
    neighbour matrix and element list, and with pairs its edge pairs; model_overrides:
    MACEConfig fields. Returns (model, graph, number of atoms, number of real edges)."""
    from ase.build import bulk

    from jaxtl.graph.batching import graph_from_configuration, pad_batch
    from jaxtl.graph.io import configuration_from_atoms
    from jaxtl.model import product, tensor_product

    monkeypatch.setattr(tensor_product, "EDGE_CHUNK", edge_chunk)
    monkeypatch.setattr(tensor_product, "NODE_MAJOR_SLOTS", slots)
    monkeypatch.setattr(tensor_product, "NODE_MAJOR_BYTES", 0)  # steps of `slots` whatever the width
    monkeypatch.setattr(product, "NODE_CHUNK", node_chunk)
    arch = dict(hidden_irreps="4x0e+4x1o", max_ell=2, correlation=(3, 2), radial_MLP=(8,), atomic_numbers=(8, 29))
    model = random_jaxtl_model(seed=7, **{**arch, **model_overrides})
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((3, 1, 1))
    atoms.rattle(0.1, seed=1)
    atoms.numbers[[1, 6]] = 8
    item = graph_from_configuration(configuration_from_atoms(atoms, read_labels=False), model.config.r_max)
    batch = pad_batch([item], len(atoms) + 3, item.graph.senders.shape[0] + extra_edges, 2, r_max=model.config.r_max)
    graph = batch.graph if layout else batch.graph._replace(neighbours=None, elements=None, edge_pairs=None)
    if not pairs:
        graph = graph._replace(edge_pairs=None)
    return model, graph, len(atoms), item.graph.senders.shape[0]
