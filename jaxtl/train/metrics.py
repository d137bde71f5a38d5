"""Error metrics (MAE, RMSE) accumulated exactly over batches, overall and per config_type.

Two halves:
- `graph_errors` (pure, jit-able): per-graph sums of absolute and squared errors
  and the number of elements each sum covers, so nothing but [n_graphs] arrays
  leave the device;
- `MetricsAccumulator` (host): adds those sums per group ("all" and each
  config_type, which is host-side data) and turns them into MAE/RMSE at the end.
  Means are over all elements seen, never means of batch means.

Units of the reported metrics: energy per atom in meV/atom, forces in meV/A,
stress in meV/A^3 (the models work in eV, eV/A, eV/A^3).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.graph.graph import Graph
from jaxtl.graph.labels import Labels

PROPERTIES = ("energy", "forces", "stress")
ALL = "all"


def graph_errors(pred: Mapping[str, jnp.ndarray], labels: Labels, graph: Graph) -> dict[str, jnp.ndarray]:
    """Per-graph error sums, all [n_graphs].

    For each property p in energy (per atom), forces, stress (when predicted):
    `p_abs` (sum of |error|), `p_sq` (sum of error^2) and `p_count` (elements
    summed; 0 for padding graphs and for graphs without that label).
    """
    gmask = graph.graph_mask
    n_atoms = jnp.maximum(graph.n_node, 1)
    n_graphs = graph.n_graphs
    nmask = graph.node_mask & gmask[graph.node_graph]
    out = {}

    has_e = gmask & (labels.energy_weight > 0)
    d_e = jnp.where(has_e, (pred["energy"] - labels.energy) / n_atoms, 0.0)
    out["energy_abs"] = jnp.abs(d_e)
    out["energy_sq"] = d_e**2
    out["energy_count"] = has_e.astype(d_e.dtype)

    has_f = nmask & (labels.forces_weight > 0)[graph.node_graph]
    d_f = jnp.where(has_f[:, None], pred["forces"] - labels.forces, 0.0)
    seg = lambda x: jax.ops.segment_sum(x, graph.node_graph, num_segments=n_graphs)
    out["forces_abs"] = seg(jnp.abs(d_f).sum(axis=1))
    out["forces_sq"] = seg((d_f**2).sum(axis=1))
    out["forces_count"] = 3.0 * seg(has_f.astype(d_f.dtype))

    if "stress" in pred:
        has_s = gmask & (labels.stress_weight > 0)
        d_s = jnp.where(has_s[:, None, None], pred["stress"] - labels.stress, 0.0)
        out["stress_abs"] = jnp.abs(d_s).sum(axis=(1, 2))
        out["stress_sq"] = (d_s**2).sum(axis=(1, 2))
        out["stress_count"] = 9.0 * has_s.astype(d_s.dtype)
    return out


class MetricsAccumulator:
    """Host-side exact accumulation of `graph_errors` over batches.

    Usage: `acc.update(graph_errors_np, config_types)` per batch, then
    `acc.result()` -> {group: {"energy_mae": meV/atom, "energy_rmse", "forces_mae"
    (meV/A), "forces_rmse", "stress_mae" (meV/A^3), "stress_rmse", "n_graphs"}}.
    """

    def __init__(self):
        # group -> key -> float (python floats: float64 sums on the host)
        self._sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def update(self, errors: Mapping[str, np.ndarray], config_types: Sequence[str | None] | None = None):
        """Add one batch. `config_types[g]` names graph g (None or missing: only "all")."""
        errors = {k: np.asarray(v, dtype=np.float64) for k, v in errors.items()}
        n_graphs = next(iter(errors.values())).shape[0]
        # A graph is "seen" when it carries at least one label.
        seen = sum(errors[f"{p}_count"] for p in PROPERTIES if f"{p}_count" in errors) > 0
        groups: dict[str, np.ndarray] = {ALL: np.ones(n_graphs, bool)}
        if config_types is not None:
            types = list(config_types) + [None] * (n_graphs - len(config_types))
            for name in {t for t in types if t is not None}:
                groups[name] = np.array([t == name for t in types])
        for name, sel in groups.items():
            acc = self._sums[name]
            for key, value in errors.items():
                acc[key] += float(value[sel].sum())
            acc["n_graphs"] += float((seen & sel).sum())

    def merge(self, other: MetricsAccumulator) -> MetricsAccumulator:
        for name, sums in other._sums.items():
            for key, value in sums.items():
                self._sums[name][key] += value
        return self

    def result(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, acc in self._sums.items():
            res = {"n_graphs": int(acc["n_graphs"])}
            for p in PROPERTIES:
                count = acc.get(f"{p}_count", 0.0)
                if count > 0:
                    res[f"{p}_mae"] = 1000.0 * acc[f"{p}_abs"] / count
                    res[f"{p}_rmse"] = 1000.0 * math.sqrt(acc[f"{p}_sq"] / count)
            out[name] = res
        return out
