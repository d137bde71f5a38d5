"""Not computing gradients of frozen parameters, and what that saves.

Zeroing frozen updates in the optimiser (`optax.set_to_zero`) keeps frozen weights
fixed, but `jax.grad` over the whole tree still builds their cotangents. Two ways
to skip that work, both exact:

- `split_params` / `merge_params`: differentiate a closure over the frozen part
  w.r.t. the trainable part only (`trainable_value_and_grad`);
- `stop_frozen_gradients(predict_fn, labels)`: the same effect without touching the
  trainer -- frozen leaves pass through `jax.lax.stop_gradient` inside the model
  call, so their tangents are symbolic zeros and no cotangent is ever formed.

`step_time_saving` measures one optimiser step (energy + forces loss) with f0,
with the labels but full gradients, and with the labels and frozen gradients cut.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from jaxtl.finetune.freeze import FROZEN, TRAINABLE, label_transforms


def split_params(params, labels) -> tuple[dict, dict]:
    """(trainable, frozen): two nested dicts holding the non-frozen and the frozen leaves."""
    flat, flat_labels = traverse_util.flatten_dict(params), traverse_util.flatten_dict(labels)
    trainable = {k: v for k, v in flat.items() if flat_labels[k] != FROZEN}
    frozen = {k: v for k, v in flat.items() if flat_labels[k] == FROZEN}
    return traverse_util.unflatten_dict(trainable), traverse_util.unflatten_dict(frozen)


def merge_params(trainable: dict, frozen: dict) -> dict:
    """The full parameter tree back from `split_params`' halves."""
    return traverse_util.unflatten_dict({**traverse_util.flatten_dict(frozen), **traverse_util.flatten_dict(trainable)})


def trainable_value_and_grad(loss_fn: Callable, labels, has_aux: bool = False) -> Callable:
    """`f(params, *args) -> (value, grads)` with gradients taken w.r.t. non-frozen leaves
    only; `grads` has the full tree with zeros at frozen leaves (optimiser-ready)."""

    def value_and_grad(params, *args):
        trainable, frozen = split_params(params, labels)
        closure = lambda t: loss_fn(merge_params(t, frozen), *args)
        value, g = jax.value_and_grad(closure, has_aux=has_aux)(trainable)
        return value, merge_params(g, jax.tree.map(jnp.zeros_like, frozen))

    return value_and_grad


def stop_frozen(params, labels):
    """`params` with `jax.lax.stop_gradient` on every frozen leaf."""
    return jax.tree.map(lambda x, label: jax.lax.stop_gradient(x) if label == FROZEN else x, params, labels)


def stop_frozen_gradients(predict_fn: Callable, labels) -> Callable:
    """`predict_fn(variables, graph, compute_stress)` whose frozen params carry no gradient.

    Values are unchanged; `jax.grad` w.r.t. params gives exact zeros for frozen
    leaves without computing them. Pass the result to `jaxtl.train.train`.
    """

    def predict(variables, graph, compute_stress=False):
        return predict_fn({**variables, "params": stop_frozen(variables["params"], labels)}, graph, compute_stress)

    return predict


def _time(fn, *args, n_steps: int) -> float:
    out = fn(*args)
    jax.block_until_ready(out)  # compile outside the clock
    t0 = time.perf_counter()
    for _ in range(n_steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / n_steps


def step_time_saving(
    predict_fn: Callable,
    variables: dict,
    batch,
    labels,
    n_steps: int = 10,
    forces_weight: float = 100.0,
    lr: float = 1e-3,
) -> dict:
    """Seconds per jitted Adam step (energy + forces MSE) for three variants.

    Returns {"f0": all trainable, "labels_full_grad": the labels with every gradient
    computed (frozen ones zeroed by the optimiser), "labels_cut_grad": the labels with
    frozen gradients not computed, "saving_vs_f0": 1 - cut / f0,
    "saving_vs_full_grad": 1 - cut / full}.
    """
    params, constants = variables["params"], variables["constants"]
    graph, ref = batch.graph, batch.labels
    n_real = jnp.maximum(jnp.sum(graph.graph_mask), 1)

    def make_step(step_labels, predict):
        opt = optax.multi_transform(label_transforms(step_labels, optax.adam(lr)), step_labels)

        def loss(p):
            pred = predict({"params": p, "constants": constants}, graph, False)
            de = jnp.where(graph.graph_mask, pred["energy"] - ref.energy, 0.0)
            df = jnp.where(graph.node_mask[:, None], pred["forces"] - ref.forces, 0.0)
            return jnp.sum(de**2) / n_real + forces_weight * jnp.sum(df**2) / (3 * jnp.sum(graph.node_mask))

        @jax.jit
        def step(p, state):
            value, grads = jax.value_and_grad(loss)(p)
            updates, state = opt.update(grads, state, p)
            return optax.apply_updates(p, updates), state, value

        return step, opt.init(params)

    all_train = jax.tree.map(lambda _: TRAINABLE, labels)
    variants = {
        "f0": (all_train, predict_fn),
        "labels_full_grad": (labels, predict_fn),
        "labels_cut_grad": (labels, stop_frozen_gradients(predict_fn, labels)),
    }
    times = {}
    for name, (step_labels, predict) in variants.items():
        step, state = make_step(step_labels, predict)
        times[name] = _time(step, params, state, n_steps=n_steps)
    times["saving_vs_f0"] = 1.0 - times["labels_cut_grad"] / times["f0"]
    times["saving_vs_full_grad"] = 1.0 - times["labels_cut_grad"] / times["labels_full_grad"]
    return times
