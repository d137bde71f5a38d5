"""Padding changes nothing: same energies and forces, finite gradients everywhere."""

import jax
import numpy as np
from ase.build import bulk
from helpers import random_jaxtl_model

from jaxtl.graph.batching import graph_from_configuration, pad_batch
from jaxtl.graph.io import configuration_from_atoms


def test_padding_invariance_and_finite_gradients():
    model = random_jaxtl_model(
        seed=4,
        distance_transform="Agnesi",
        pair_repulsion=True,
        hidden_irreps="4x0e+4x1o",
        max_ell=1,
        correlation=(2, 2),
        radial_MLP=(8,),
    )
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.1, seed=0)
    atoms.numbers[1] = 8
    item = graph_from_configuration(configuration_from_atoms(atoms, read_labels=False), model.config.r_max)
    n, e = len(atoms), item.graph.senders.shape[0]
    small = pad_batch([item], n + 1, e + 1, 2, r_max=model.config.r_max)
    large = pad_batch([item], n + 37, e + 501, 5, r_max=model.config.r_max)
    a, b = model.predict(small.graph), model.predict(large.graph)
    np.testing.assert_allclose(a["energy"][0], b["energy"][0], rtol=1e-12)
    np.testing.assert_allclose(a["forces"][:n], b["forces"][:n], atol=1e-12)
    np.testing.assert_allclose(a["stress"][0], b["stress"][0], atol=1e-12)
    assert np.all(np.asarray(b["energy"][1:]) == 0) and np.all(np.asarray(b["forces"][n:]) == 0)

    energy = model.energy_fn()

    def loss(params):
        out = model.module.apply({"params": params, "constants": model.constants}, large.graph)
        return (out["energy"] * large.graph.graph_mask).sum()

    grads = jax.grad(loss)(model.params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(grads))
    force_grads = jax.grad(
        lambda p: (
            model.predict(large.graph, variables={"params": p, "constants": model.constants})["forces"] ** 2
        ).sum()
    )(model.params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree_util.tree_leaves(force_grads))
    assert np.isfinite(float(energy(model.params, large.graph)[0]))
