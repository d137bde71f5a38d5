"""Exponential moving average of the parameters (torch_ema, as used by mace-torch).

After the t-th optimiser step (t = 1, 2, ...) the shadow parameters move as
`ema <- ema - (1 - d_t) (ema - params)` with `d_t = min(decay, (1 + t) / (10 + t))`,
so early averages follow the live weights closely. Evaluation and the best
checkpoint use the EMA weights when EMA is on.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class EMAState(NamedTuple):
    """count: number of updates so far (int32 scalar); params: the shadow pytree."""

    count: jnp.ndarray
    params: Any


def ema_init(params) -> EMAState:
    """The shadow starts as a copy of the live parameters."""
    return EMAState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.array, params))


def ema_decay(count, decay: float, dtype=jnp.float32):
    """torch_ema's effective decay after `count` updates (count >= 1)."""
    t = jnp.asarray(count).astype(dtype)
    return jnp.minimum(jnp.asarray(decay, dtype), (1.0 + t) / (10.0 + t))


def ema_update(state: EMAState, params, decay: float) -> EMAState:
    """One EMA step towards `params` (call after each optimiser step)."""
    count = state.count + 1

    def move(shadow, live):
        one_minus = 1.0 - ema_decay(count, decay, shadow.dtype)
        return shadow - one_minus * (shadow - live)

    return EMAState(count, jax.tree.map(move, state.params, params))
