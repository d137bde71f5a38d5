"""MACE interaction blocks (mace-torch `RealAgnostic*InteractionBlock`).

Every block maps node features `h` (blocks over `node_feats_irreps`) to a message
`[n_nodes, channels, sum_l (2l+1)]` over `target_irreps` and an optional skip
connection `sc` over `hidden_irreps` (None for the non-residual blocks).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxtl.model import tensor_product as tp
from jaxtl.model.irreps import IrrepsSpec, blocks_to_channel_major
from jaxtl.model.linear import ElementLinear, IrrepsLinear, irreps_linear
from jaxtl.model.radial import RadialMLP, radial_mlp

INTERACTION_CLASSES = (
    "RealAgnosticInteractionBlock",
    "RealAgnosticResidualInteractionBlock",
    "RealAgnosticDensityInteractionBlock",
    "RealAgnosticDensityResidualInteractionBlock",
    "RealAgnosticResidualNonLinearInteractionBlock",
)


def radial_weights_fn(layers, act_cst: float, paths, embed=None):
    """What the message functions call on rows of their per-edge data (chunks of edges,
    slots, one edge of each pair): the radial MLP `layers` on rows (edge_feats, cutoff or
    None), one [rows, mul] per path; with `embed` (see `Interaction`), (harmonics,
    radial weights) of rows of the data `embed` reads. Applied to rows, as the MLP's
    [n_edges, weight_numel] output would be one of the largest tensors of the model."""

    def radial_fn(data):
        feats, cut = data
        weights = radial_mlp(layers, feats, act_cst, split=[t.mul for t in paths])
        return weights if cut is None else [w * cut for w in weights]

    if embed is None:
        return radial_fn

    def slot_fn(rows):
        sh_rows, feats, cut = embed(rows)
        return sh_rows, radial_fn((feats, cut))

    return slot_fn


def step_fn(mid: IrrepsSpec, target: IrrepsSpec, mats, avg_num_neighbors: float, then=None, sc_fn=None, skip=None):
    """`node_fn` of `tensor_product.messages`, run on each step's node rows inside its loop:
    the linear map `mats` from the paths' irreps `mid` to `target` (the path-wide messages
    then exist for one step of nodes at a time). With `then` (see `Interaction`), also the
    normalisation and `then` itself, on rows (node_feats, species, then_data) of node
    data; `sc_fn` (node_feats, species) -> sc of the residual blocks, or `skip` (message,
    species) -> message of the plain ones, element-dependent linear maps of those rows."""
    if then is None:
        return lambda blocks, data: irreps_linear(mid, target, mats, blocks)

    def node_fn(blocks, data):
        feats_rows, species_rows, then_rows = data
        message = tuple(m / avg_num_neighbors for m in irreps_linear(mid, target, mats, blocks))
        if skip is not None:
            message = skip(message, species_rows)
        sc_rows = None if sc_fn is None else sc_fn(feats_rows, species_rows)
        return then(blocks_to_channel_major(message), sc_rows, then_rows)

    return node_fn


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
    backend: str = "xla"  # see `jaxtl.model.cueq`

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
        cutoff: jnp.ndarray | None,
        senders: jnp.ndarray,
        receivers: jnp.ndarray,
        neighbours: jnp.ndarray | None = None,
        elements: jnp.ndarray | None = None,
        edge_pairs: jnp.ndarray | None = None,
        embed=None,
        then=None,
        then_data=None,
    ):
        """node_feats: blocks [n_nodes, mul, 2l+1]; species: [n_nodes];
        sh: [n_edges, 2l+1] per l; edge_feats: [n_edges, num_radial];
        cutoff: [n_edges, 1] or None; neighbours: [n_nodes, K] incoming edge ids or
        None; elements: [slots] element indices present or None; edge_pairs: [2, n_pairs]
        the two edge ids of each pair of opposite edges, or None (see `Graph`).
        embed: None, or rows of `edge_feats` (then a pytree of per-edge arrays) ->
        (harmonics, radial basis, cutoff or None) of those rows: the message loop then
        embeds each step's edges itself (`tensor_product.node_major_messages`), and sh
        and cutoff are None.
        then: None, or (message rows [r, C, D], sc rows or None, rows of `then_data`) ->
        rows of any pytree, the next block (the product basis), for the blocks without
        density: it then runs on each step's rows inside the message loop, so that the
        messages [n, C, D] (and their gradient) never exist for all nodes; then_data: a
        pytree of [n, ...] arrays.
        Returns (message [n, C, D], sc blocks or None), or with `then`, (its result, None)."""
        n_nodes = species.shape[0]
        sc_fn = sc = None
        if self.residual:
            sc_fn = ElementLinear(
                self.node_feats_irreps, self.hidden_irreps, self.num_elements, self.dtype, name="skip_tp"
            )(None, elements=elements)
            # with `then`, the loop makes sc step by step ([n, slots, mul] per element otherwise)
            sc = None if then is not None else sc_fn(node_feats, species)

        h = IrrepsLinear(self.node_feats_irreps, self.edge_irreps, self.dtype, name="linear_up")(node_feats)
        paths = tp.conv_tp_paths(self.edge_irreps, self.sh_irreps, self.target_irreps)
        mlp = RadialMLP(
            (self.num_radial, *self.radial_MLP, tp.weight_numel(paths)), dtype=self.dtype, name="conv_tp_weights"
        )
        if embed is not None and self.density:
            raise ValueError(f"{self.kind} reads the radial basis of every edge: it cannot stream the embedding")
        slot_fn = radial_weights_fn(mlp.weights(), mlp.act_cst, paths, embed)
        radial_data = (edge_feats, cutoff) if embed is None else edge_feats

        if self.density:
            edge_density = jnp.tanh(
                RadialMLP((self.num_radial, 1), dtype=self.dtype, name="density_fn")(edge_feats) ** 2
            )
            if cutoff is not None:
                edge_density = edge_density * cutoff
            density = jax.ops.segment_sum(edge_density, receivers, num_segments=n_nodes)  # [n, 1]

        # edge_feats and cutoff depend on the length and on the two elements symmetrically
        # (the distance transforms use the sum of their radii), so one MLP row serves
        # both edges of a pair
        # the linear map from the paths to the target irreps runs inside the loop over
        # nodes: the path-wide messages then exist for one step of nodes at a time
        mid = tp.mid_irreps(paths)
        mats = IrrepsLinear(mid, self.target_irreps, self.dtype, name="linear").weights()
        skip = None
        if then is not None and self.density:
            raise ValueError(f"{self.kind}: the density-normalised blocks cannot run `then` in their loop")
        if then is not None and not self.residual:
            skip = ElementLinear(self.target_irreps, self.target_irreps, self.num_elements, self.dtype, name="skip_tp")(
                None, elements=elements
            )
        node_fn = step_fn(mid, self.target_irreps, mats, self.avg_num_neighbors, then, sc_fn, skip)
        node_data = None if then is None else (tuple(node_feats), species, then_data)
        args = (h, senders, receivers, neighbours, sh, radial_data, slot_fn, paths, self.backend, edge_pairs)
        message = tp.messages(*args, node_fn=node_fn, node_data=node_data)
        if then is not None:
            return message, None
        if self.density:
            message = tuple(m / (density[:, :, None] + 1.0) for m in message)
        else:
            message = tuple(m / self.avg_num_neighbors for m in message)
        if not self.residual:
            message = ElementLinear(
                self.target_irreps, self.target_irreps, self.num_elements, self.dtype, name="skip_tp"
            )(message, species, elements)
        return blocks_to_channel_major(message), sc
