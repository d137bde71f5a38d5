"""Energy readouts: mace's LinearReadoutBlock and NonLinearReadoutBlock."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.model.irreps import IrrepsSpec
from jaxtl.model.linear import IrrepsLinear
from jaxtl.model.radial import SILU_CST


class LinearReadout(nn.Module):
    """o3.Linear(hidden -> num_heads x 0e); returns [n_nodes, num_heads]."""

    irreps_in: IrrepsSpec
    num_heads: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, node_feats: Sequence[jnp.ndarray], node_heads: jnp.ndarray) -> jnp.ndarray:
        (out,) = IrrepsLinear(self.irreps_in, ((self.num_heads, 0, 1),), self.dtype, name="linear")(node_feats)
        return out[:, :, 0]


class NonLinearReadout(nn.Module):
    """linear_1 -> silu * cst (or nothing, gate "None") -> (head mask) -> linear_2; returns [n_nodes, num_heads].

    With several heads the hidden layer holds `mlp_channels` units per head and a
    node only keeps its own head's block (mace's `mask_head`); linear_2 keeps the
    full 1/sqrt(heads * mlp_channels) fan-in, as mace-torch does.
    """

    irreps_in: IrrepsSpec
    mlp_channels: int = 16
    num_heads: int = 1
    act_cst: float | None = SILU_CST  # None: no activation (mace's gate=None)
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, node_feats: Sequence[jnp.ndarray], node_heads: jnp.ndarray) -> jnp.ndarray:
        hidden = ((self.num_heads * self.mlp_channels, 0, 1),)
        (x,) = IrrepsLinear(self.irreps_in, hidden, self.dtype, name="linear_1")(node_feats)
        if self.act_cst is not None:
            x = jax.nn.silu(x) * self.act_cst
        if self.num_heads > 1:
            unit_head = jnp.arange(self.num_heads * self.mlp_channels) // self.mlp_channels
            x = x * (unit_head[None, :] == node_heads[:, None])[:, :, None]
        (out,) = IrrepsLinear(hidden, ((self.num_heads, 0, 1),), self.dtype, name="linear_2")((x,))
        return out[:, :, 0]
