"""The MACE model (mace-torch's `MACE` and `ScaleShiftMACE`) as a Flax module."""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.model.config import MACEConfig
from jaxtl.model.cueq import check_backend
from jaxtl.model.embedding import RadialEmbedding, spherical_harmonics
from jaxtl.model.interaction import Interaction
from jaxtl.model.irreps import (
    IrrepsSpec,
    blocks_to_flat,
    parse_irreps,
    scalar_channels,
    sort_simplify,
    spherical_harmonics_irreps,
)
from jaxtl.model.linear import ElementEmbedding, IrrepsLinear, irreps_linear
from jaxtl.model.nonlinear_interaction import NonLinearInteraction
from jaxtl.model.pair_repulsion import ZBLRepulsion
from jaxtl.model.product import SymmetricContraction
from jaxtl.model.readout import LinearReadout, NonLinearReadout
from jaxtl.model.tensor_product import backend_chunk

# Edges (padded) from which `MACE` recomputes the edge embedding in the backward pass, in
# the graphs that do not stream it (`edge_geometry`).
RECOMPUTE_EDGE_EMBEDDING = 1 << 18
# Edges (padded) from which `MACE` streams the edges through the message loop and runs the
# product basis there too (`streams_edge_embedding`). CPU: 2^18 is ~3,300 atoms of a dense
# metal at r_max 6 A. GPU/TPU: memory is rarely short before ~2 x 10^5 atoms, and a step
# of the loop is smaller than the product basis would take alone.
STREAM_EDGES = 1 << 18
STREAM_EDGES_ACCELERATOR = 1 << 24


def species_lookup(atomic_numbers) -> np.ndarray:
    """Table Z -> index into the model's elements (0 for unknown and padding)."""
    table = np.zeros(119, np.int32)
    for i, z in enumerate(atomic_numbers):
        table[z] = i
    return table


def layer_irreps(config: MACEConfig) -> list[dict]:
    """The irreps of each interaction/product layer, following mace-torch's constructor."""
    hidden = parse_irreps(config.hidden_irreps)
    C = scalar_channels(hidden)
    sh = spherical_harmonics_irreps(config.max_ell)
    target = sort_simplify(tuple((C, l, p) for _, l, p in sh))
    first_out = (hidden[0],) if config.num_interactions == 1 else hidden
    first_edge = ((C, 0, 1),)
    if config.use_edge_irreps_first and config.edge_irreps:
        first_edge = ((scalar_channels(parse_irreps(config.edge_irreps)), 0, 1),)
    layers = [
        dict(
            cls=config.interaction_cls_first,
            node_feats=((C, 0, 1),),
            edge=first_edge,
            target=target,
            hidden_out=first_out,
            use_sc="Residual" in config.interaction_cls_first,
        )
    ]
    edge = parse_irreps(config.edge_irreps) if config.edge_irreps else hidden
    for i in range(config.num_interactions - 1):
        last = i == config.num_interactions - 2
        out = (hidden[0],) if last and not config.keep_last_layer_irreps else hidden
        layers.append(
            dict(cls=config.interaction_cls, node_feats=hidden, edge=edge, target=target, hidden_out=out, use_sc=True)
        )
    return layers


class ProductBlock(nn.Module):
    """mace's `EquivariantProductBasisBlock`: contraction, linear, + skip connection."""

    coupling_irreps: IrrepsSpec
    hidden_out: IrrepsSpec
    correlation: int
    num_elements: int
    use_sc: bool
    dtype: jnp.dtype = jnp.float32
    backend: str = "xla"

    @nn.compact
    def __call__(self, message, sc=None, species=None, elements=None):
        """message: [n, C, D]; sc: blocks [n, mul, 2l+1] over hidden_out or None; species:
        [n]; elements: [slots] model element indices present (-1 for none) or None.
        Returns blocks over hidden_out. message None: returns the block as a pure function
        (message, sc, species) of any rows, for a loop over nodes (xla backend)."""
        contraction = SymmetricContraction(
            self.coupling_irreps,
            self.hidden_out,
            self.correlation,
            self.num_elements,
            self.dtype,
            self.backend,
            name="symmetric_contraction",
        )(message, species, elements)
        mats = IrrepsLinear(self.hidden_out, self.hidden_out, self.dtype, name="linear").weights()
        use_sc, hidden_out = self.use_sc, self.hidden_out

        def after_contraction(feats, sc):
            feats = irreps_linear(hidden_out, hidden_out, mats, feats)
            if use_sc and sc is not None:
                feats = tuple(f + s for f, s in zip(feats, sc))
            return feats

        if message is None:  # `contraction` is the contraction's function of rows
            return lambda message, sc, species: after_contraction(contraction(message, species), sc)
        return after_contraction(contraction, sc)  # `contraction` holds the contracted features


def edge_geometry(graph: Graph, max_ell: int) -> tuple[jnp.ndarray, list, bool]:
    """(lengths [n_edges, 1] A, spherical harmonics [n_edges, 2l+1] per l up to max_ell,
    recompute): whether the graph is large enough for the backward pass to recompute
    the per-edge embedding.

    The per-edge harmonics and radial basis are cheap to compute but their backward
    residuals (sines, cosines, powers: several [n_edges, num_bessel] arrays) would live
    through the whole forward and backward pass: in large graphs the backward recomputes
    them from the edge vectors instead (small ones keep them: no extra work where memory
    is no issue).
    """
    vectors = edge_vectors(graph)
    lengths = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
    recompute = vectors.shape[0] >= RECOMPUTE_EDGE_EMBEDDING
    sh_fn = jax.checkpoint(spherical_harmonics, static_argnums=1) if recompute else spherical_harmonics
    return lengths, sh_fn(vectors, max_ell), recompute


def streams_edge_embedding(cfg: MACEConfig, graph: Graph, backend: str) -> bool:
    """Whether the interactions embed each step's edges in their message loop.

    The harmonics [n_edges, 16] and radial basis [n_edges, num_bessel] of all edges, their
    gradients and the residuals of their backward pass are then never formed: in a
    10^5-atom cell each such array is 0.3 to 0.5 GB. The price is the embedding of every
    slot in every layer, again in the backward pass, next to the radial MLP that
    already runs per slot; graphs below `STREAM_EDGES` edges (`STREAM_EDGES_ACCELERATOR`
    on a GPU or TPU) keep the embedding made once. Only the blocks that read the edges
    through the loop can stream (not the density-normalised nor the non-linear ones),
    with the neighbour matrix and the xla backend.
    """
    classes = {cfg.interaction_cls_first} | ({cfg.interaction_cls} if cfg.num_interactions > 1 else set())
    loop_only = not any("Density" in c or "NonLinear" in c for c in classes)
    large = graph.senders.shape[0] >= backend_chunk(STREAM_EDGES, STREAM_EDGES_ACCELERATOR)
    return large and loop_only and graph.neighbours is not None and backend == "xla"


def slot_embedding(radial_embedding, max_ell: int):
    """The streamed embedding of `streams_edge_embedding`: rows (vectors [s, 3] in A,
    z_sender, z_receiver [s]) -> (harmonics [s, 2l+1] per l up to max_ell, radial basis
    [s, num_basis], cutoff [s, 1] or None), all zero in an empty slot (a zero vector).

    radial_embedding: `RadialEmbedding`'s pure function (lengths, z_sender, z_receiver)."""

    def embed(rows):
        vectors, z_s, z_r = rows
        filled = jnp.any(vectors != 0, axis=-1, keepdims=True)
        # an empty slot is embedded as a unit-ish vector (no 0/0, no NaN in its zero gradient), then zeroed
        safe = jnp.where(filled, vectors, jnp.ones_like(vectors))
        mask = filled.astype(vectors.dtype)
        feats, cut = radial_embedding(jnp.linalg.norm(safe, axis=-1, keepdims=True), z_s, z_r)
        sh = tuple(y * mask for y in spherical_harmonics(safe, max_ell))
        return sh, feats * mask, None if cut is None else cut * mask

    return embed


def node_species(cfg: MACEConfig, graph: Graph):
    """(species [n_nodes]: model element index, z_s, z_r [n_edges]: atomic numbers of senders
    and receivers, real_species [n_nodes], elements [slots] or None).

    Padding nodes look like element 0 in z; in `real_species` they borrow a real node's
    element for the product basis (their outputs are masked, and an element of their own
    would cost its weight tables). `elements`: the model's indices of the elements present,
    -1 in empty slots and for numbers the model does not know.
    """
    lookup = jnp.asarray(species_lookup(cfg.atomic_numbers))
    species = lookup[graph.atomic_numbers]
    model_z = jnp.asarray(np.asarray(cfg.atomic_numbers, np.int32))
    z_nodes = model_z[species]
    z_s, z_r = z_nodes[graph.senders], z_nodes[graph.receivers]
    real_species = jnp.where(graph.node_mask, species, species[jnp.argmax(graph.node_mask)])
    elements = None
    if graph.elements is not None:
        listed = lookup[graph.elements]
        elements = jnp.where(model_z[listed] == graph.elements, listed, -1)
    return species, z_s, z_r, real_species, elements


def energies(node_e0, node_inter, graph: Graph, n_graphs: int, dtype) -> dict:
    """node_energy [n_nodes] (E0 + interaction, eV, zero on padding nodes), energy and
    interaction_energy [n_graphs] (eV)."""
    mask = graph.node_mask.astype(dtype)
    node_inter = node_inter * mask
    node_energy = (node_e0 + node_inter) * mask
    return {
        "node_energy": node_energy,
        "energy": jax.ops.segment_sum(node_energy, graph.node_graph, num_segments=n_graphs),
        "interaction_energy": jax.ops.segment_sum(node_inter, graph.node_graph, num_segments=n_graphs),
    }


class Edges(NamedTuple):
    """What every interaction block reads of the edges.

    sh: spherical harmonics [n_edges, 2l+1] per l; edge_feats: radial basis [n_edges,
    num_bessel]; cutoff: [n_edges, 1]; senders, receivers: [n_edges]; neighbours, edge_pairs:
    the graph's optional layouts (`Graph`). Streamed (`streams_edge_embedding`): sh and
    cutoff None, edge_feats the per-edge rows (vectors, z_sender, z_receiver) that
    `embed` (`slot_embedding`) turns into harmonics, radial basis and cutoff."""

    sh: list | None
    edge_feats: jnp.ndarray | tuple
    cutoff: jnp.ndarray | None
    senders: jnp.ndarray
    receivers: jnp.ndarray
    neighbours: jnp.ndarray | None
    edge_pairs: jnp.ndarray | None
    embed: object = None


class MACE(nn.Module):
    """MACE energy model. `__call__(graph)` returns node and graph energies.

    Returns a dict with `node_energy [n_nodes]` (E0 + interaction, eV, zero on
    padding nodes), `energy [n_graphs]` (eV), `interaction_energy [n_graphs]`.

    backend: "xla" (default) or "cueq", NVIDIA cuEquivariance kernels for the
    convolution and the symmetric contraction (`jaxtl.model.cueq`); the weights
    are the same. A runtime choice, not saved with the model.
    """

    config: MACEConfig
    backend: str = "xla"

    def __post_init__(self):
        check_backend(self.backend)
        super().__post_init__()

    @property
    def dtype(self):
        return jnp.dtype(self.config.dtype)

    @nn.compact
    def __call__(self, graph: Graph, node_feats_out: bool = False):
        cfg = self.config
        dtype = self.dtype
        Z = cfg.num_elements
        H = len(cfg.heads)
        n_nodes, n_graphs = graph.positions.shape[0], graph.cell.shape[0]

        graph = graph._replace(positions=graph.positions.astype(dtype), cell=graph.cell.astype(dtype))
        species, z_s, z_r, real_species, elements = node_species(cfg, graph)
        node_heads = graph.head[graph.node_graph]

        edges, lengths = self._edges(graph, z_s, z_r)

        e0_table = jnp.asarray(
            self.variable("constants", "atomic_energies", lambda: jnp.zeros((H, Z), dtype)).value, dtype
        )
        node_e0 = e0_table[node_heads, species]

        pair = jnp.zeros((n_nodes,), dtype)
        if cfg.pair_repulsion:
            pair = ZBLRepulsion(cfg.num_polynomial_cutoff, name="pair_repulsion")(
                lengths, z_s, z_r, graph.receivers, n_nodes
            )

        h = ElementEmbedding(Z, scalar_channels(parse_irreps(cfg.hidden_irreps)), dtype, name="node_embedding")(species)
        feats_per_layer = self._layers(h, species, real_species, elements, edges)

        node_inter = pair + self._readouts(feats_per_layer, node_heads)
        if cfg.model_type == "ScaleShiftMACE":
            scale = jnp.asarray(self.variable("constants", "scale", lambda: jnp.ones((H,), dtype)).value, dtype)
            shift = jnp.asarray(self.variable("constants", "shift", lambda: jnp.zeros((H,), dtype)).value, dtype)
            node_inter = scale[node_heads] * node_inter + shift[node_heads]

        out = energies(node_e0, node_inter, graph, n_graphs, dtype)
        if node_feats_out:
            out["node_feats"] = jnp.concatenate([blocks_to_flat(f) for f, _ in feats_per_layer], axis=-1)
        return out

    def _edges(self, graph: Graph, z_s, z_r) -> tuple[Edges, jnp.ndarray]:
        """The interaction blocks' edge inputs (submodule `radial_embedding`; called from
        `__call__` only) and the edge lengths [n_edges, 1] in A. z_s, z_r: [n_edges] atomic
        numbers of the senders and receivers."""
        cfg = self.config
        basis = (cfg.r_max, cfg.num_bessel, cfg.num_polynomial_cutoff, cfg.radial_type, cfg.distance_transform)
        layout = (graph.senders, graph.receivers, graph.neighbours, graph.edge_pairs)
        if streams_edge_embedding(cfg, graph, self.backend):
            vectors = edge_vectors(graph)
            embedding = RadialEmbedding(*basis, cfg.apply_cutoff, name="radial_embedding")()
            edges = Edges(None, (vectors, z_s, z_r), None, *layout, embed=slot_embedding(embedding, cfg.max_ell))
            return edges, jnp.linalg.norm(vectors, axis=-1, keepdims=True)
        lengths, sh, recompute = edge_geometry(graph, cfg.max_ell)
        edge_feats, cutoff = (nn.remat(RadialEmbedding) if recompute else RadialEmbedding)(
            *basis, cfg.apply_cutoff, name="radial_embedding"
        )(lengths, z_s, z_r)
        return Edges(sh, edge_feats, cutoff, *layout), lengths

    def _layers(self, h, species, real_species, elements, edges: Edges) -> list[tuple]:
        """Interaction and product blocks `interactions_t`, `products_t` (submodules of this
        compact module: called from `__call__` only): [(node features, their irreps)] per layer.

        h: [n_nodes, channels] the element embedding; species, real_species: [n_nodes] element
        indices (see `node_species`); elements: [slots] or None."""
        cfg = self.config
        Z = cfg.num_elements
        sh_irreps = spherical_harmonics_irreps(cfg.max_ell)
        feats_per_layer = []
        for t, lay in enumerate(layer_irreps(cfg)):
            common = dict(
                node_feats_irreps=lay["node_feats"],
                edge_irreps=lay["edge"],
                sh_irreps=sh_irreps,
                target_irreps=lay["target"],
                hidden_irreps=lay["hidden_out"],
                num_elements=Z,
                num_radial=cfg.num_bessel,
                radial_MLP=cfg.radial_MLP,
                avg_num_neighbors=cfg.avg_num_neighbors[t],
                dtype=self.dtype,
                backend=self.backend,
                name=f"interactions_{t}",
            )
            e = edges
            args = (h, species, e.sh, e.edge_feats, e.cutoff, e.senders, e.receivers, e.neighbours, elements)
            prod_species = jnp.zeros_like(species) if cfg.use_agnostic_product else real_species
            product = ProductBlock(
                lay["target"],
                lay["hidden_out"],
                cfg.correlation[t],
                1 if cfg.use_agnostic_product else Z,
                lay["use_sc"],
                self.dtype,
                self.backend,
                name=f"products_{t}",
            )
            prod_elements = None if cfg.use_agnostic_product else elements
            if lay["cls"] == "RealAgnosticResidualNonLinearInteractionBlock":
                # its radial MLP reads the sender's and the receiver's embeddings: no pairs
                message, sc = NonLinearInteraction(**common)(*args)
            elif e.embed is not None:
                # a graph large enough to stream its edges: the product basis runs in the
                # message loop too, on each step's nodes (`Interaction`'s `then`)
                then = product(None, elements=prod_elements)
                h, _ = Interaction(kind=lay["cls"], **common)(*args, e.edge_pairs, e.embed, then, prod_species)
                feats_per_layer.append((h, lay["hidden_out"]))
                continue
            else:
                message, sc = Interaction(kind=lay["cls"], **common)(*args, e.edge_pairs, e.embed)
            h = product(message, sc, prod_species, prod_elements)
            feats_per_layer.append((h, lay["hidden_out"]))
        return feats_per_layer

    def _readouts(self, feats_per_layer: list[tuple], node_heads) -> jnp.ndarray:
        """The summed readouts `readouts_i` of the layers' features: interaction energy
        [n_nodes] (eV, before scale and shift) on each node's head (`node_heads` [n_nodes])."""
        cfg = self.config
        H = len(cfg.heads)
        readout_energies = []
        mlp_channels = scalar_channels(parse_irreps(cfg.MLP_irreps))
        n_layers = len(feats_per_layer)
        n_readouts = 1 if cfg.use_last_readout_only else n_layers
        for i in range(n_readouts):
            feats, irreps = feats_per_layer[-1 if n_readouts == 1 else i]
            # mace-torch: the last layer's readout is non-linear, except in one-layer models
            if i == n_readouts - 1 and n_layers > 1:
                gate = cfg.gate_cst if cfg.gate == "silu" else None
                readout = NonLinearReadout(irreps, mlp_channels, H, gate, self.dtype, name=f"readouts_{i}")
            else:
                readout = LinearReadout(irreps, H, self.dtype, name=f"readouts_{i}")
            out = readout(feats, node_heads)
            readout_energies.append(jnp.take_along_axis(out, node_heads[:, None], axis=1)[:, 0])
        return sum(readout_energies)


def init_variables(config: MACEConfig, seed: int = 0) -> dict:
    """Fresh variables {"params", "constants"} of a MACE (jit-compiled init on a tiny graph)."""
    from ase import Atoms

    from jaxtl.graph.batching import graph_from_configuration, pad_batch
    from jaxtl.graph.io import configuration_from_atoms

    z = config.atomic_numbers[0]
    atoms = Atoms(numbers=[z, z], positions=[[0, 0, 0], [0, 0, min(1.5, config.r_max / 2)]])
    item = graph_from_configuration(configuration_from_atoms(atoms, read_labels=False), config.r_max)
    batch = pad_batch([item], 4, 4, 2, r_max=config.r_max, dtype=np.dtype(config.dtype))
    # the rbg generator compiles much faster than threefry for the many small inits
    variables = jax.jit(MACE(config).init)(jax.random.key(seed, impl="rbg"), batch.graph)
    return jax.tree_util.tree_map(np.asarray, variables)
