"""MACE interaction blocks (mace-torch `RealAgnostic*InteractionBlock`).

Every block maps node features `h` (blocks over `node_feats_irreps`) to a message
`[n_nodes, channels, sum_l (2l+1)]` over `target_irreps` and an optional skip
connection `sc` over `hidden_irreps` (None for the non-residual blocks).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.model import tensor_product as tp
from jaxtl.model.irreps import IrrepsSpec, blocks_to_channel_major
from jaxtl.model.linear import ElementLinear, IrrepsLinear
from jaxtl.model.radial import RadialMLP

INTERACTION_CLASSES = (
    "RealAgnosticInteractionBlock",
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
)


def scatter_messages(
    messages: Sequence[jnp.ndarray], receivers: jnp.ndarray, n_nodes: int
) -> tuple[jnp.ndarray, ...]:
    """Sum per-edge blocks onto receiving nodes."""
    return tuple(jax.ops.segment_sum(m, receivers, num_segments=n_nodes) for m in messages)


class Interaction(nn.Module):
    """Residual, non-residual and density-normalised MACE interactions.

    `kind` is the mace-torch class name; the four variants differ only in where
    the element-dependent skip (`skip_tp`) acts and what normalises the message
    (`avg_num_neighbors`, or the learned density `rho + 1`).
    """

    kind: str
    node_feats_irreps: IrrepsSpec
    edge_irreps: IrrepsSpec
    sh_irreps: IrrepsSpec
    target_irreps: IrrepsSpec
    hidden_irreps: IrrepsSpec
    num_elements: int
    num_radial: int
    radial_MLP: Sequence[int]
    avg_num_neighbors: float
    dtype: jnp.dtype = jnp.float32

    @property
    def residual(self) -> bool:
        return "Residual" in self.kind

    @property
    def density(self) -> bool:
        return "Density" in self.kind

    @nn.compact
    def __call__(
        self,
        node_feats: Sequence[jnp.ndarray],
        species: jnp.ndarray,
        sh: Sequence[jnp.ndarray],
        edge_feats: jnp.ndarray,
        cutoff: Optional[jnp.ndarray],
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
    ):
        """node_feats: blocks [n_nodes, mul, 2l+1]; species: [n_nodes];
        sh: [n_edges, 2l+1] per l; edge_feats: [n_edges, num_radial];
        cutoff: [n_edges, 1] or None. Returns (message [n, C, D], sc blocks or None)."""
        n_nodes = species.shape[0]
        sc = None
        if self.residual:
            sc = ElementLinear(
                self.node_feats_irreps, self.hidden_irreps, self.num_elements, self.dtype, name="skip_tp"
            )(node_feats, species)

        h = IrrepsLinear(self.node_feats_irreps, self.edge_irreps, self.dtype, name="linear_up")(node_feats)
        paths = tp.conv_tp_paths(self.edge_irreps, self.sh_irreps, self.target_irreps)
        tp_weights = RadialMLP(
            (self.num_radial, *self.radial_MLP, tp.weight_numel(paths)), dtype=self.dtype, name="conv_tp_weights"
        )(edge_feats)
        if cutoff is not None:
            tp_weights = tp_weights * cutoff

        if self.density:
            edge_density = jnp.tanh(RadialMLP((self.num_radial, 1), dtype=self.dtype, name="density_fn")(edge_feats) ** 2)
            if cutoff is not None:
                edge_density = edge_density * cutoff
            density = jax.ops.segment_sum(edge_density, receivers, num_segments=n_nodes)  # [n, 1]

        h_senders = [b[senders] for b in h]
        messages = tp.conv_tp(h_senders, sh, tp_weights, paths)
        message = scatter_messages(messages, receivers, n_nodes)
        message = IrrepsLinear(tp.mid_irreps(paths), self.target_irreps, self.dtype, name="linear")(message)
        if self.density:
            message = tuple(m / (density[:, :, None] + 1.0) for m in message)
        else:
            message = tuple(m / self.avg_num_neighbors for m in message)
        if not self.residual:
            message = ElementLinear(
                self.target_irreps, self.target_irreps, self.num_elements, self.dtype, name="skip_tp"
            )(message, species)
        return blocks_to_channel_major(message), sc
