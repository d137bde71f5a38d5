"""The jitted train and eval steps (pure; data parallel over a device mesh).

`make_train_step` returns `step(state, constants, batch, lr, weights) -> (state, stats)`
where `batch` is a stacked Batch [n_dev * m, ...] (see `jaxtl.train.parallel`),
`lr` the learning rate and `weights` the loss term weights, both traced so that
schedules and stage two never recompile. Only `state.params` is optimised;
`constants` are passed to the model untouched.

`check_vma=False` in the shard_maps is deliberate: with it on, a gradient taken
*inside* the model with respect to a value created on each device (the zero
strain of the stress trick) is transposed into a sum over devices, which mixes
the virials of different devices. Here gradients are summed explicitly, once.

Each call of the traced Python function bumps `counter`, i.e. it counts
compilations (one per distinct batch shape).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxtl.graph.labels import Batch
from jaxtl.train.distributed import lost_peer, peer_error
from jaxtl.train.ema import EMAState, ema_update
from jaxtl.train.loss import loss_terms
from jaxtl.train.metrics import graph_errors
from jaxtl.train.parallel import DATA

PredictFn = Callable[[dict, Any, bool], dict]


class TrainState(NamedTuple):
    """Everything that changes during training.

    step: int32 scalar, optimiser steps done; params: trainable pytree;
    opt_state: optimiser state; ema: EMAState or None.
    """

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema: EMAState | None


def _batch_terms(predict_fn, variables, batch: Batch, loss: str, huber_delta: float, compute_stress: bool):
    pred = predict_fn(variables, batch.graph, compute_stress)
    return loss_terms(pred, batch.labels, batch.graph, loss, huber_delta)


def _stacked(fn, stack):
    """`jax.vmap(fn)(stack)`, except that a stack of one calls `fn` on its only member.

    The usual case, one batch per device, then has no size-1 batch dimension: under
    vmap every dot of the model carries one, and XLA's CPU backend answers it with
    transposing copies of the radial MLP's activations in the backward pass (a
    training step of a 32x0e Si model spent 40 % of its time in them).
    """
    if jax.tree_util.tree_leaves(stack)[0].shape[0] == 1:
        return jax.tree_util.tree_map(lambda a: a[None], fn(jax.tree_util.tree_map(lambda a: a[0], stack)))
    return jax.vmap(fn)(stack)


def make_train_step(
    predict_fn: PredictFn,
    loss: str,
    huber_delta: float,
    compute_stress: bool,
    optimizer: optax.GradientTransformationExtraArgs,
    ema_decay: float | None,
    mesh: Mesh,
    counter: Counter | None = None,
):
    """The jitted optimiser step; `stats` = {"loss": scalar, "terms": {name: (sum, count)}}."""
    counter = Counter() if counter is None else counter

    def local(state: TrainState, constants, batch: Batch, lr, weights):
        def local_loss(params):
            variables = {"params": params, "constants": constants}
            per_batch = _stacked(
                lambda b: _batch_terms(predict_fn, variables, b, loss, huber_delta, compute_stress), batch
            )
            terms = {k: (s.sum(), c.sum()) for k, (s, c) in per_batch.items()}
            # Counts over the whole step (all devices) do not depend on params.
            counts = {k: jax.lax.psum(c, DATA) for k, (_, c) in terms.items()}
            part = sum(weights[k] * s / jnp.maximum(counts[k], 1.0) for k, (s, _) in terms.items())
            return part, terms

        (part, terms), grads = jax.value_and_grad(local_loss, has_aux=True)(state.params)
        grads = jax.lax.psum(grads, DATA)
        total = jax.lax.psum(part, DATA)
        terms = jax.lax.psum(terms, DATA)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params, learning_rate=lr)
        params = optax.apply_updates(state.params, updates)
        ema = None if state.ema is None else ema_update(state.ema, params, ema_decay)
        new_state = TrainState(state.step + 1, params, opt_state, ema)
        return new_state, {"loss": total, "terms": terms}

    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(P(), P(), P(DATA), P(), P()), out_specs=(P(), P()), check_vma=False
    )

    def step(state, constants, batch, lr, weights):
        counter["train"] += 1  # runs only while tracing
        return sharded(state, constants, batch, lr, weights)

    return _reporting_lost_peers(jax.jit(step), "a training step"), counter


def make_eval_step(
    predict_fn: PredictFn,
    loss: str,
    huber_delta: float,
    compute_stress: bool,
    mesh: Mesh,
    counter: Counter | None = None,
):
    """`eval(params, constants, batch) -> (terms, errors)`.

    terms: {name: (sum, count)} summed over the stacked batches; errors: the
    `graph_errors` of each stacked batch, [n_stack, n_graphs] arrays, replicated
    on every device.
    """
    counter = Counter() if counter is None else counter

    def local(params, constants, batch: Batch):
        variables = {"params": params, "constants": constants}

        def one(b):
            pred = predict_fn(variables, b.graph, compute_stress)
            return (loss_terms(pred, b.labels, b.graph, loss, huber_delta), graph_errors(pred, b.labels, b.graph))

        per_batch, errors = _stacked(one, batch)
        terms = {k: (s.sum(), c.sum()) for k, (s, c) in per_batch.items()}
        # every process needs every device's errors for its metrics
        return jax.lax.psum(terms, DATA), jax.lax.all_gather(errors, DATA, tiled=True)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P(DATA)), out_specs=(P(), P()), check_vma=False)

    def evaluate(params, constants, batch):
        counter["eval"] += 1
        return sharded(params, constants, batch)

    return _reporting_lost_peers(jax.jit(evaluate), "an evaluation step"), counter


def _reporting_lost_peers(fn, what: str):
    """`fn` that, in a multi-process job, waits for its result and turns a collective
    failing on a lost process into a `DistributedError` saying so (not a hang or a
    bare runtime error)."""
    if jax.process_count() == 1:
        return fn

    def call(*args):
        try:
            return jax.block_until_ready(fn(*args))
        except Exception as err:  # XLA reports a failed collective as ValueError/RuntimeError
            if lost_peer(err):
                raise peer_error(err, what) from err
            raise

    return call
