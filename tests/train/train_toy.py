"""A tiny Flax pair potential with the jaxtl model contract, and hand-built padded batches.

`predict(variables, graph, compute_stress)` returns energy [n_graphs] (eV),
node_energy [n_nodes], forces [n_nodes, 3] (eV/A) and, with compute_stress,
virials and stress [n_graphs, 3, 3] from a symmetric strain of positions and cell.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.graph.labels import Batch, Labels

R_MAX = 3.0
N_SPECIES = 10  # atomic numbers 0..9


class ToyPair(nn.Module):
    """E = sum_i E0[z_i] + 1/2 sum_ij scale * mlp(r_ij) * envelope(r_ij)."""

    @nn.compact
    def __call__(self, graph: Graph, positions, cell):
        e0 = self.param("E0s", nn.initializers.zeros, (N_SPECIES,), positions.dtype)
        scale = self.variable("constants", "scale", lambda: jnp.ones((), positions.dtype)).value
        vec = edge_vectors(graph, positions, cell)
        r2 = jnp.sum(vec**2, axis=-1)
        real = graph.node_mask[graph.receivers] & graph.node_mask[graph.senders] & (r2 > 0)
        r = jnp.sqrt(jnp.where(real, r2, 1.0))
        x = (r / R_MAX)[:, None]
        h = jnp.tanh(nn.Dense(8, param_dtype=positions.dtype, name="radial_mlp_0")(x))
        pair = nn.Dense(1, param_dtype=positions.dtype, name="radial_mlp_1")(h)[:, 0]
        envelope = jnp.where(r < R_MAX, (1 - r / R_MAX) ** 2, 0.0)
        pair = jnp.where(real, scale * pair * envelope, 0.0)
        node_e = e0[graph.atomic_numbers] + 0.5 * jax.ops.segment_sum(pair, graph.receivers, graph.n_nodes)
        return jnp.where(graph.node_mask, node_e, 0.0)


MODEL = ToyPair()


def init_variables(seed: int = 0, dtype=jnp.float64, graph: Graph | None = None) -> dict:
    graph = make_batch([random_structure(np.random.default_rng(0))]).graph if graph is None else graph
    graph = jax.tree.map(
        lambda x: jnp.asarray(x, dtype) if np.issubdtype(np.asarray(x).dtype, np.floating) else jnp.asarray(x), graph
    )
    v = MODEL.init(jax.random.PRNGKey(seed), graph, graph.positions, graph.cell)
    return {"params": v["params"], "constants": v["constants"]}


def predict(variables, graph: Graph, compute_stress: bool = False) -> dict:
    n_graphs = graph.n_graphs

    def energy(positions, strain):
        sym = 0.5 * (strain + jnp.swapaxes(strain, 1, 2))
        pos = positions + jnp.einsum("ni,nij->nj", positions, sym[graph.node_graph])
        cell = graph.cell + jnp.einsum("gi,gij->gj", graph.cell.reshape(-1, 3), jnp.repeat(sym, 3, 0)).reshape(
            n_graphs, 3, 3
        )
        node_e = MODEL.apply(variables, graph, pos, cell)
        e = jax.ops.segment_sum(node_e, graph.node_graph, n_graphs)
        return e.sum(), (e, node_e)

    strain = jnp.zeros((n_graphs, 3, 3), graph.positions.dtype)
    (_, (e, node_e)), (d_pos, d_strain) = jax.value_and_grad(energy, argnums=(0, 1), has_aux=True)(
        graph.positions, strain
    )
    out = {"energy": e, "node_energy": node_e, "forces": -d_pos}
    if compute_stress:
        volume = jnp.abs(jnp.linalg.det(graph.cell))
        ok = volume > 0
        out["virials"] = -d_strain
        out["stress"] = jnp.where(ok[:, None, None], d_strain / jnp.where(ok, volume, 1.0)[:, None, None], 0.0)
    return out


# ---------------------------------------------------------------- data


def random_structure(rng: np.random.Generator, n_atoms: int | None = None) -> dict:
    """A small cluster in a 10 A box: positions, numbers, cell."""
    n = int(rng.integers(2, 5)) if n_atoms is None else n_atoms
    while True:
        pos = rng.uniform(0.0, 2.2, size=(n, 3))
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1) + 10 * np.eye(n)
        if d.min() > 0.8:
            break
    return {"positions": pos + 4.0, "numbers": rng.choice([1, 6, 8], size=n), "cell": 10.0 * np.eye(3)}


def make_batch(structures, labels=None, n_nodes: int = 16, n_edges: int = 64, n_graphs: int = 5, weights=None) -> Batch:
    """Pad `structures` into one Batch; the last graph is the padding graph.

    labels: per structure dict(energy, forces, stress, virials) or None (zeros, weight 0).
    """
    pos, z, snd, rcv, node_graph, n_node, cells = [], [], [], [], [], [], []
    offset = 0
    for g, s in enumerate(structures):
        n = len(s["numbers"])
        pos.append(s["positions"])
        z.append(s["numbers"])
        for i in range(n):
            for j in range(n):
                if i != j and np.linalg.norm(s["positions"][i] - s["positions"][j]) < R_MAX:
                    snd.append(offset + j)
                    rcv.append(offset + i)
        node_graph += [g] * n
        n_node.append(n)
        cells.append(s["cell"])
        offset += n
    n_real, e_real, g_real = offset, len(snd), len(structures)
    assert n_real < n_nodes and e_real <= n_edges and g_real < n_graphs
    pad = n_nodes - n_real
    positions = np.concatenate(pos + [np.zeros((pad, 3))])
    numbers = np.concatenate(z + [np.zeros(pad, int)]).astype(np.int32)
    senders = np.array(snd + [n_nodes - 1] * (n_edges - e_real), np.int32)
    receivers = np.array(rcv + [n_nodes - 1] * (n_edges - e_real), np.int32)
    node_graph = np.array(node_graph + [n_graphs - 1] * pad, np.int32)
    n_node_arr = np.zeros(n_graphs, np.int32)
    n_node_arr[:g_real] = n_node
    n_node_arr[-1] = pad
    cell = np.zeros((n_graphs, 3, 3))
    cell[:g_real] = cells
    graph = Graph(
        positions=positions,
        atomic_numbers=numbers,
        senders=senders,
        receivers=receivers,
        unit_shifts=np.zeros((n_edges, 3)),
        cell=cell,
        node_graph=node_graph,
        n_node=n_node_arr,
        head=np.zeros(n_graphs, np.int32),
        node_mask=np.arange(n_nodes) < n_real,
        graph_mask=np.arange(n_graphs) < g_real,
    )
    lab = {
        k: np.zeros(shape)
        for k, shape in (
            ("energy", (n_graphs,)),
            ("forces", (n_nodes, 3)),
            ("stress", (n_graphs, 3, 3)),
            ("virials", (n_graphs, 3, 3)),
        )
    }
    w = {k: np.zeros(n_graphs) for k in ("weight", "energy_weight", "forces_weight", "stress_weight", "virials_weight")}
    if labels is not None:
        off = 0
        for g, (s, l) in enumerate(zip(structures, labels)):
            n = len(s["numbers"])
            lab["energy"][g] = l["energy"]
            lab["forces"][off : off + n] = l["forces"]
            lab["stress"][g] = l["stress"]
            lab["virials"][g] = l["virials"]
            for k in w:
                w[k][g] = 1.0
            if weights is not None:
                w["weight"][g] = weights[g]
            off += n
    return Batch(graph, Labels(**lab, **w))


_predict_jit = jax.jit(predict, static_argnums=2)


def label_batch(batch: Batch, variables, weights=None) -> Batch:
    """`batch` with every real structure labelled by a (teacher) toy model."""
    p = _predict_jit(variables, jax.tree.map(jnp.asarray, batch.graph), True)
    g = batch.graph
    real_g = np.asarray(g.graph_mask, float)
    real_n = np.asarray(g.node_mask, float)
    w = real_g if weights is None else real_g * np.asarray(weights)
    labels = Labels(
        energy=np.asarray(p["energy"]) * real_g,
        forces=np.asarray(p["forces"]) * real_n[:, None],
        stress=np.asarray(p["stress"]) * real_g[:, None, None],
        virials=np.asarray(p["virials"]) * real_g[:, None, None],
        weight=w,
        energy_weight=real_g,
        forces_weight=real_g,
        stress_weight=real_g,
        virials_weight=real_g,
    )
    return Batch(g, labels)


def teacher() -> dict:
    """The labelling model: another random init with E0s set."""
    t = init_variables(7)
    t["params"]["E0s"] = jnp.linspace(-3.0, -1.0, N_SPECIES)
    return t


def dataset(n_batches: int, per_batch: int = 3, seed: int = 0, **pad) -> list[Batch]:
    """Padded batches of random clusters labelled by `teacher()`."""
    rng = np.random.default_rng(seed)
    t = teacher()
    return [
        label_batch(make_batch([random_structure(rng) for _ in range(per_batch)], **pad), t) for _ in range(n_batches)
    ]
