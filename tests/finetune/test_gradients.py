"""Frozen means frozen through optax steps; frozen gradients are cut exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtl.finetune import (
    FROZEN,
    freeze_labels,
    label_transforms,
    lr_factor_transforms,
    merge_params,
    pattern_labels,
    soft_labels,
    split_params,
    stop_frozen_gradients,
    trainable_value_and_grad,
)
from jaxtl.train import OptimizerConfig, make_optimizer


def _labels(params, name):
    if name == "pattern":
        return pattern_labels(params, freeze=["interactions_1", "*/symmetric_contraction/*"])
    if name == "soft":
        return soft_labels(params, {"products_lr_factor": 0.1}, base=freeze_labels(params, 1))
    return freeze_labels(params, name)


def _toy_loss(params, targets):
    return sum(jnp.sum(jnp.sin(p) * t) for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(targets)))


@pytest.mark.parametrize("which", [1, 6, "pattern", "soft"])
def test_frozen_leaves_bit_identical(h2cu, which):
    _, variables = h2cu
    params = jax.tree.map(jnp.asarray, variables["params"])
    labels = _labels(params, which)
    rng = np.random.default_rng(0)
    targets = jax.tree.map(lambda x: rng.normal(size=x.shape), params)
    optimizers = {
        "multi_transform": optax.multi_transform(label_transforms(labels, optax.adamw(1e-2, weight_decay=0.1)), labels),
        "engine": make_optimizer(OptimizerConfig(weight_decay=0.1), labels, lr_factor_transforms(labels)),
    }
    for name, opt in optimizers.items():

        @jax.jit
        def step(p, state):
            grads = jax.grad(_toy_loss)(p, targets)
            updates, state = (
                opt.update(grads, state, p, learning_rate=1e-2) if name == "engine" else opt.update(grads, state, p)
            )
            return optax.apply_updates(p, updates), state

        p, state = params, opt.init(params)
        for _ in range(2):
            p, state = step(p, state)
        for before, after, label in zip(jax.tree.leaves(params), jax.tree.leaves(p), jax.tree.leaves(labels)):
            if label == FROZEN:
                assert np.array_equal(np.asarray(before), np.asarray(after)), name
            else:
                assert not np.allclose(before, after), name


def test_split_merge_roundtrip(h2cu):
    _, variables = h2cu
    params, labels = variables["params"], freeze_labels(variables["params"], 5)
    trainable, frozen = split_params(params, labels)
    assert set(trainable) == {"products_0", "products_1", "readouts_0", "readouts_1"}
    assert set(frozen) == {"node_embedding", "interactions_0", "interactions_1"}
    assert jax.tree.structure(merge_params(trainable, frozen)) == jax.tree.structure(params)


def test_cut_gradients_are_exact(h2cu):
    from ase.build import bulk

    from jaxtl.convert.verify import jaxtl_batch
    from jaxtl.model import MACE, make_predict

    config, variables = h2cu
    variables = jax.tree.map(jnp.asarray, variables)
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    atoms.symbols[0] = "H"
    atoms.rattle(0.05, seed=0)
    graph = jaxtl_batch([atoms], config.r_max).graph
    predict = make_predict(MACE(config))
    labels = freeze_labels(variables["params"], 6)

    def loss(predict_fn):
        def f(params):
            out = predict_fn({"params": params, "constants": variables["constants"]}, graph, False)
            return out["energy"][0] + jnp.sum(out["forces"] ** 2)

        return f

    @jax.jit  # one compilation for the three
    def grads(params):
        return (
            jax.grad(loss(predict))(params),
            jax.grad(loss(stop_frozen_gradients(predict, labels)))(params),
            trainable_value_and_grad(loss(predict), labels)(params)[1],
        )

    full, cut, split = grads(variables["params"])
    for g_full, g_cut, g_split, label in zip(*map(jax.tree.leaves, (full, cut, split, labels))):
        if label == FROZEN:
            assert not np.any(g_cut) and not np.any(g_split)
        else:
            np.testing.assert_allclose(g_cut, g_full, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(g_split, g_full, rtol=1e-12, atol=1e-14)
