"""mace-torch's training losses as pure functions of (predictions, labels, graph).

Every loss is a weighted sum of *terms*. A term is a pair `(sum, count)`: the
sum of the per-element errors over the real (unpadded) part of a batch and the
number of elements the mean runs over (real graphs, 3 x real atoms, 9 x real
graphs, ...). `combine` turns terms into the scalar loss as
`sum_t weight_t * sum_t / count_t`.

Keeping sums and counts apart is what makes the loss exact whatever the
batching: the terms of several batches (or devices) are added before dividing,
which is mace-torch's DDP reduction (`reduce_loss`) and equals the loss of one
batch holding all their structures. Padding contributes to neither sums nor
counts, so padding never changes a loss or its gradient.

Definitions (mace-torch 0.3.16 `mace/modules/loss.py`; `n_g` atoms of graph g,
`w` = `labels.weight`, `w_E, w_F, w_S, w_V` the per-property label weights):

- `weighted`:    E: mean_g[w w_E ((E - E_ref)/n_g)^2],  F: mean_{i,a}[w w_F (F - F_ref)^2]
- `forces_only`: the F term of `weighted`
- `stress`:      `weighted` + S: mean_{g,ab}[w w_S (s - s_ref)^2]
- `virials`:     `weighted` + V: mean_{g,ab}[w w_V ((V - V_ref)/n_g)^2]
- `huber`:       Huber(delta) of E/n_g, F and s (no per-config weights; a missing label,
                 label weight 0, adds nothing)
- `universal`:   Huber(delta) of w_E E/n_g and w_S s; forces: conditional Huber of
                 w_F F whose delta is delta x (1, 0.7, 0.4, 0.1) for |w_F F_ref| in
                 [0, 100), [100, 200), [200, 300), >= 300 eV/A
- `l1l2`:        E: mean_g[w w_E |E - E_ref|/n_g],  F: mean_i |F - F_ref|_2 over atoms whose
                 forces are labels (w_F > 0)

Missing labels have label weight 0 (`jaxtl.graph.io`), so they add nothing to any
loss while still counting in its mean, as in mace-torch. mace-torch's `huber` and
`l1l2` ignore the label weights and would fit a frame without forces to zero forces;
here their errors are masked by `label weight > 0` instead, which is the same loss
whenever every label is present.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp

from jaxtl.graph.graph import Graph
from jaxtl.graph.labels import Labels

Term = tuple[jnp.ndarray, jnp.ndarray]

LOSSES = ("weighted", "forces_only", "stress", "virials", "huber", "universal", "l1l2")
_USES_STRESS = ("stress", "virials", "huber", "universal")
# Force-magnitude bands (eV/A) and delta factors of mace-torch's conditional Huber.
_FORCE_BANDS = (100.0, 200.0, 300.0)
_BAND_FACTORS = (1.0, 0.7, 0.4, 0.1)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Which loss, and the weight of each of its terms (mace-torch CLI defaults)."""

    loss: str = "weighted"
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    stress_weight: float = 1.0
    virials_weight: float = 1.0
    huber_delta: float = 0.01

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {LOSSES}")

    def weights(self) -> dict[str, float]:
        """Term weights {"energy", "forces", "stress", "virials"} (lambda_E, ...)."""
        return {
            "energy": self.energy_weight,
            "forces": self.forces_weight,
            "stress": self.stress_weight,
            "virials": self.virials_weight,
        }


def needs_stress(loss: str) -> bool:
    """Whether the model must predict stress/virials for this loss."""
    return loss in _USES_STRESS


def huber(x: jnp.ndarray, delta) -> jnp.ndarray:
    """Elementwise Huber loss of the error `x` (torch's `huber_loss`, reduction none)."""
    ax = jnp.abs(x)
    return jnp.where(ax < delta, 0.5 * x * x, delta * (ax - 0.5 * delta))


def _per_graph(graph: Graph):
    """Real-graph mask [n_graphs] (float) and atom counts [n_graphs] (>= 1)."""
    gmask = graph.graph_mask
    n_atoms = jnp.maximum(graph.n_node, 1)
    return gmask, n_atoms


def _node_mask(graph: Graph) -> jnp.ndarray:
    """[n_nodes] real nodes that belong to a real graph."""
    return graph.node_mask & graph.graph_mask[graph.node_graph]


def _graph_term(err: jnp.ndarray, mask: jnp.ndarray, n_components: int) -> Term:
    """Term of a per-graph error `err` [n_graphs, ...] over the graphs in `mask`."""
    err = err.reshape(err.shape[0], -1).sum(axis=1)
    total = jnp.sum(jnp.where(mask, err, 0.0))
    return total, n_components * jnp.sum(mask).astype(total.dtype)


def _node_term(err: jnp.ndarray, mask: jnp.ndarray, n_components: int) -> Term:
    """Term of a per-node error `err` [n_nodes, ...] over the nodes in `mask`."""
    err = err.reshape(err.shape[0], -1).sum(axis=1)
    total = jnp.sum(jnp.where(mask, err, 0.0))
    return total, n_components * jnp.sum(mask).astype(total.dtype)


def loss_terms(
    pred: Mapping[str, jnp.ndarray], labels: Labels, graph: Graph, loss: str, huber_delta: float = 0.01
) -> dict[str, Term]:
    """The (sum, count) terms of `loss` for one padded batch.

    Args:
        pred: model output with `energy` [n_graphs] (eV), `forces` [n_nodes, 3]
            (eV/A) and, for stress losses, `stress` [n_graphs, 3, 3] (eV/A^3)
            and `virials` [n_graphs, 3, 3] (eV).
        labels, graph: the batch; padding has mask False and weight 0.
        loss: one of `LOSSES`.
        huber_delta: delta of the Huber losses (eV/atom, eV/A, eV/A^3).

    Returns:
        {term name: (sum, count)}; names among energy, forces, stress, virials.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
    gmask, n_atoms = _per_graph(graph)
    nmask = _node_mask(graph)
    node_graph = graph.node_graph
    w = labels.weight
    d_energy = (pred["energy"] - labels.energy) / n_atoms
    d_forces = pred["forces"] - labels.forces
    terms: dict[str, Term] = {}

    if loss in ("weighted", "stress", "virials", "forces_only"):
        w_f = (w * labels.forces_weight)[node_graph][:, None]
        terms["forces"] = _node_term(w_f * d_forces**2, nmask, 3)
        if loss != "forces_only":
            terms["energy"] = _graph_term(w * labels.energy_weight * d_energy**2, gmask, 1)
        if loss == "stress":
            w_s = (w * labels.stress_weight)[:, None, None]
            terms["stress"] = _graph_term(w_s * (pred["stress"] - labels.stress) ** 2, gmask, 9)
        if loss == "virials":
            w_v = (w * labels.virials_weight)[:, None, None]
            d_vir = (pred["virials"] - labels.virials) / n_atoms[:, None, None]
            terms["virials"] = _graph_term(w_v * d_vir**2, gmask, 9)
    elif loss == "huber":
        has = lambda weight: (weight > 0).astype(d_energy.dtype)  # noqa: E731
        terms["energy"] = _graph_term(has(labels.energy_weight) * huber(d_energy, huber_delta), gmask, 1)
        has_f = has(labels.forces_weight)[node_graph][:, None]
        terms["forces"] = _node_term(has_f * huber(d_forces, huber_delta), nmask, 3)
        has_s = has(labels.stress_weight)[:, None, None]
        terms["stress"] = _graph_term(has_s * huber(pred["stress"] - labels.stress, huber_delta), gmask, 9)
    elif loss == "universal":
        w_f = labels.forces_weight[node_graph][:, None]
        terms["energy"] = _graph_term(huber(labels.energy_weight * d_energy, huber_delta), gmask, 1)
        terms["forces"] = _node_term(
            conditional_huber_forces(w_f * labels.forces, w_f * pred["forces"], huber_delta), nmask, 3
        )
        w_s = labels.stress_weight[:, None, None]
        terms["stress"] = _graph_term(huber(w_s * (pred["stress"] - labels.stress), huber_delta), gmask, 9)
    elif loss == "l1l2":
        terms["energy"] = _graph_term(w * labels.energy_weight * jnp.abs(d_energy), gmask, 1)
        # The norm's gradient is undefined at 0; a safe norm keeps it finite there.
        sq = jnp.sum(d_forces**2, axis=-1)
        safe = jnp.where(sq > 0, sq, 1.0)
        norm = jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
        has_f = (labels.forces_weight > 0)[node_graph]
        terms["forces"] = _node_term(jnp.where(has_f, norm, 0.0), nmask, 1)
    return terms


def conditional_huber_forces(ref_forces: jnp.ndarray, pred_forces: jnp.ndarray, huber_delta) -> jnp.ndarray:
    """Elementwise Huber [n_nodes, 3] with delta shrinking for large reference forces.

    The band of each atom is chosen by |ref_forces| (eV/A), as in mace-torch.
    """
    norm = jnp.linalg.norm(ref_forces, axis=-1)
    band = jnp.searchsorted(jnp.asarray(_FORCE_BANDS, norm.dtype), norm, side="right")
    delta = huber_delta * jnp.asarray(_BAND_FACTORS, pred_forces.dtype)[band]
    return huber(pred_forces - ref_forces, delta[:, None])


def combine(terms: Mapping[str, Term], weights: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    """Scalar loss sum_t weights[t] * sum_t / count_t (an empty term counts as 0)."""
    total = 0.0
    for name, (s, c) in terms.items():
        total = total + weights[name] * s / jnp.maximum(c, 1.0)
    return jnp.asarray(total)


def add_terms(a: Mapping[str, Term], b: Mapping[str, Term]) -> dict[str, Term]:
    """Terms of the union of two batches (sums and counts added)."""
    return {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a}


def compute_loss(
    pred: Mapping[str, jnp.ndarray],
    labels: Labels,
    graph: Graph,
    cfg: LossConfig,
    weights: Mapping[str, float] | None = None,
) -> jnp.ndarray:
    """The scalar loss of one batch (`cfg.loss` with `cfg`'s weights unless given)."""
    terms = loss_terms(pred, labels, graph, cfg.loss, cfg.huber_delta)
    return combine(terms, cfg.weights() if weights is None else weights)
