"""Metrics accumulate exactly over batches and per config_type."""

import jax
import jax.numpy as jnp
import numpy as np
import train_toy as T

from jaxtl.train.metrics import MetricsAccumulator, graph_errors


def test_exact_accumulation_and_config_types():
    rng = np.random.default_rng(2)
    structs = [T.random_structure(rng) for _ in range(4)]
    types = ["bulk", "surface", "bulk", None]
    teacher, student = T.teacher(), T.init_variables(3)
    halves = [T.label_batch(T.make_batch(structs[:1]), teacher), T.label_batch(T.make_batch(structs[1:]), teacher)]
    acc = MetricsAccumulator()
    per_graph = []
    for b, ctypes in zip(halves, (types[:1], types[1:])):
        b = jax.tree.map(jnp.asarray, b)
        p = T._predict_jit(student, b.graph, True)
        acc.update(jax.tree.map(np.asarray, graph_errors(p, b.labels, b.graph)), ctypes)
        n = int(b.graph.graph_mask.sum())
        for g in range(n):
            sel = np.asarray(b.graph.node_graph) == g
            per_graph.append(
                {
                    "de": float((p["energy"][g] - b.labels.energy[g]) / b.graph.n_node[g]),
                    "df": np.asarray(p["forces"] - b.labels.forces)[sel].ravel(),
                    "ds": np.asarray(p["stress"][g] - b.labels.stress[g]).ravel(),
                }
            )
    res = acc.result()

    def expect(idx):
        de = np.array([per_graph[i]["de"] for i in idx])
        df = np.concatenate([per_graph[i]["df"] for i in idx])
        ds = np.concatenate([per_graph[i]["ds"] for i in idx])
        return {
            "energy_mae": 1e3 * np.abs(de).mean(),
            "energy_rmse": 1e3 * np.sqrt((de**2).mean()),
            "forces_mae": 1e3 * np.abs(df).mean(),
            "forces_rmse": 1e3 * np.sqrt((df**2).mean()),
            "stress_mae": 1e3 * np.abs(ds).mean(),
            "stress_rmse": 1e3 * np.sqrt((ds**2).mean()),
        }

    for group, idx in (("all", [0, 1, 2, 3]), ("bulk", [0, 2]), ("surface", [1])):
        for key, value in expect(idx).items():
            np.testing.assert_allclose(res[group][key], value, rtol=1e-10, err_msg=f"{group} {key}")
        assert res[group]["n_graphs"] == len(idx)
    # Merging two accumulators equals one accumulator over everything.
    assert MetricsAccumulator().merge(acc).result() == res
