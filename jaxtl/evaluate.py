"""Errors of a model on labelled structures (the `jaxtl eval` command)."""

from __future__ import annotations

import numpy as np

from jaxtl.api import load_model
from jaxtl.graph.dataset import GraphDataset
from jaxtl.graph.io import check_elements, read_configurations
from jaxtl.train.data import epoch_batches
from jaxtl.train.metrics import MetricsAccumulator, graph_errors


def evaluate_configs(loaded, configs, batch_size: int = 16) -> dict:
    """MAE/RMSE (meV/atom, meV/A, meV/A^3) overall and per config_type."""
    check_elements(configs, loaded.config.atomic_numbers)
    dataset = GraphDataset(configs, loaded.config.r_max, heads=loaded.config.heads)
    dtype = np.float64 if loaded.config.dtype == "float64" else np.float32
    acc = MetricsAccumulator()
    stress = any(c.stress is not None for c in configs)
    for batch, types in epoch_batches(dataset, batch_size, 0, shuffle=False, dtype=dtype)(0):
        pred = loaded.predict(batch.graph, compute_stress=stress)
        acc.update(graph_errors(pred, batch.labels, batch.graph), types)
    return acc.result()


def evaluate_file(model_dir, data_file, batch_size: int = 16, dtype=None, backend: str = "xla") -> dict:
    loaded = load_model(model_dir, dtype=dtype, backend=backend)
    return evaluate_configs(loaded, read_configurations(data_file), batch_size)
