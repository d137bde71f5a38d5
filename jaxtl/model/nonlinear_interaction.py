"""mace's `RealAgnosticResidualNonLinearInteractionBlock` (MACE-MH style).

Differences from the other blocks: the radial MLP also sees learned sender and
receiver element embeddings and uses biases + LayerNorm; the message is
normalised by `beta * rho + alpha` (trainable scalars), gated by an equivariant
non-linearity, and the skip connection is element-agnostic.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.model import tensor_product as tp
from jaxtl.model.irreps import IrrepsSpec, blocks_to_channel_major, scalar_channels, sort_simplify
from jaxtl.model.linear import ElementEmbedding, IrrepsLinear
from jaxtl.model.radial import SIGMOID_CST, SILU_CST, LayerNormMLP


def gate_irreps(target: IrrepsSpec) -> IrrepsSpec:
    """Input irreps of the gate: scalars, one gate scalar per gated channel, gated."""
    scalars = [e for e in target if e[1] == 0]
    gated = [e for e in target if e[1] > 0]
    gates = [(m, 0, 1) for m, _, _ in gated]
    return sort_simplify(tuple(scalars + gates + gated))


def equivariant_gate(blocks: Sequence[jnp.ndarray], target: IrrepsSpec) -> tuple[jnp.ndarray, ...]:
    """silu on scalars, sigmoid gates multiplying each gated irrep channel-wise.

    blocks follow `gate_irreps(target)`; the output follows `target`.
    """
    scalar_block = blocks[0]  # [n, n_scalars + n_gates, 1]
    n_scalars = sum(m for m, l, _ in target if l == 0)
    scalars = jax.nn.silu(scalar_block[:, :n_scalars]) * SILU_CST
    gates = jax.nn.sigmoid(scalar_block[:, n_scalars:]) * SIGMOID_CST
    out, offset = [scalars], 0
    for block, (mul, _, _) in zip(blocks[1:], [e for e in target if e[1] > 0]):
        out.append(block * gates[:, offset : offset + mul])
        offset += mul
    return tuple(out)


class NonLinearInteraction(nn.Module):
    node_feats_irreps: IrrepsSpec
    edge_irreps: IrrepsSpec
    sh_irreps: IrrepsSpec
    target_irreps: IrrepsSpec
    hidden_irreps: IrrepsSpec
    num_elements: int
    num_radial: int
    radial_MLP: Sequence[int]
    avg_num_neighbors: float  # unused by this block, kept for a uniform signature
    dtype: jnp.dtype = jnp.float32
    backend: str = "xla"  # see `jaxtl.model.cueq`

    @nn.compact
    def __call__(
        self,
        node_feats,
        species,
        sh,
        edge_feats,
        cutoff: jnp.ndarray | None,
        senders,
        receivers,
        neighbours: jnp.ndarray | None = None,
        elements: jnp.ndarray | None = None,
    ):
        n_nodes = species.shape[0]
        C = scalar_channels(self.node_feats_irreps)
        nonlin_irreps = gate_irreps(self.target_irreps)

        sc = IrrepsLinear(self.node_feats_irreps, self.hidden_irreps, self.dtype, name="skip_tp")(node_feats)
        h = IrrepsLinear(self.node_feats_irreps, self.edge_irreps, self.dtype, name="linear_up")(node_feats)
        residual = IrrepsLinear(self.edge_irreps, nonlin_irreps, self.dtype, name="linear_res")(h)

        (source,) = ElementEmbedding(self.num_elements, C, self.dtype, name="source_embedding")(species)
        (target,) = ElementEmbedding(self.num_elements, C, self.dtype, name="target_embedding")(species)
        ef = jnp.concatenate([edge_feats, source[senders, :, 0], target[receivers, :, 0]], axis=-1)

        paths = tp.conv_tp_paths(self.edge_irreps, self.sh_irreps, self.target_irreps)
        n_in = self.num_radial + 2 * C
        tp_weights = LayerNormMLP((n_in, *self.radial_MLP, tp.weight_numel(paths)), self.dtype, name="conv_tp_weights")(
            ef
        )
        edge_density = jnp.tanh(LayerNormMLP((n_in, 64, 1), self.dtype, name="density_fn")(ef) ** 2)
        if cutoff is not None:
            tp_weights = tp_weights * cutoff
            edge_density = edge_density * cutoff
        density = jax.ops.segment_sum(edge_density, receivers, num_segments=n_nodes)[:, :, None]

        message = tp.messages(
            h, senders, receivers, neighbours, sh, tp_weights, lambda w: tp.path_weights(w, paths), paths, self.backend
        )
        message = IrrepsLinear(tp.mid_irreps(paths), nonlin_irreps, self.dtype, name="linear_1")(message)
        alpha = self.param("alpha", lambda k: jnp.asarray(20.0, self.dtype))
        beta = self.param("beta", lambda k: jnp.asarray(0.0, self.dtype))
        message = tuple(m / (density * beta + alpha) + r for m, r in zip(message, residual))
        message = equivariant_gate(message, self.target_irreps)
        message = IrrepsLinear(self.target_irreps, self.target_irreps, self.dtype, name="linear_2")(message)
        return blocks_to_channel_major(message), sc
