"""A model on labelled or unlabelled structures (the `jaxtl eval` command).

`evaluate_configs` gives errors overall and per config_type; `predict_configs` gives each
structure's predictions; `write_predictions` stores them in an extended XYZ file under
mace's names (`MACE_energy`, `MACE_forces`, `MACE_stress`, as `mace_eval_configs` writes);
`error_table` prints errors as a table; `evaluate_sources` gives the errors on many files
and prepared folders with the batches sharded over devices and processes as in training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxtl.api import load_model
from jaxtl.graph.dataset import GraphDataset, batch_iterator, choose_budgets
from jaxtl.graph.io import Configuration, DataError, check_elements, read_configurations
from jaxtl.train.metrics import ALL, MetricsAccumulator, graph_errors

PREFIX = "MACE_"


def _batches(loaded, configs: Sequence[Configuration], batch_size: int):
    """(batch, the indices into `configs` of its graphs), in a fixed order."""
    check_elements(configs, loaded.config.atomic_numbers)
    dataset = GraphDataset(configs, loaded.config.r_max, heads=loaded.config.heads)
    dtype = np.float64 if loaded.config.dtype == "float64" else np.float32
    batches = batch_iterator(dataset, batch_size, choose_budgets(dataset, batch_size), shuffle=False, dtype=dtype)
    return [(batch, members) for batch, (_, members) in zip(batches, batches.plan)]


def evaluate_and_predict(
    loaded, configs: Sequence[Configuration], batch_size: int = 16, stress: bool | None = None
) -> tuple[dict, list[dict]]:
    """Errors ({group: metrics}, as `evaluate_configs`) and, for each structure in
    `configs`' order, {"energy": eV, "forces": [n_atoms, 3] eV/A, "stress": [3, 3] eV/A^3
    (when computed)}.

    `stress`: compute stress (default: when any structure has a periodic 3D cell).
    """
    if stress is None:
        stress = any(all(c.pbc) and abs(np.linalg.det(c.cell)) > 1e-9 for c in configs)
    acc = MetricsAccumulator()
    predictions: list[dict | None] = [None] * len(configs)
    for batch, members in _batches(loaded, configs, batch_size):
        pred = loaded.predict(batch.graph, compute_stress=stress)
        acc.update(graph_errors(pred, batch.labels, batch.graph), [configs[i].config_type for i in members])
        energy = np.asarray(pred["energy"], np.float64)
        forces = np.asarray(pred["forces"], np.float64)
        stresses = np.asarray(pred["stress"], np.float64) if stress else None
        offsets = np.concatenate([[0], np.cumsum(np.asarray(batch.graph.n_node)[: len(members)])])
        for g, i in enumerate(members):
            one = {"energy": float(energy[g]), "forces": forces[offsets[g] : offsets[g + 1]]}
            if stresses is not None:
                one["stress"] = stresses[g]
            predictions[i] = one
    return acc.result(), predictions  # type: ignore[return-value]


def evaluate_configs(loaded, configs, batch_size: int = 16) -> dict:
    """MAE/RMSE (meV/atom, meV/A, meV/A^3) overall and per config_type."""
    stress = any(c.stress is not None for c in configs)
    return evaluate_and_predict(loaded, configs, batch_size, stress=stress)[0]


def predict_configs(loaded, configs, batch_size: int = 16, stress: bool | None = None) -> list[dict]:
    """Each structure's predictions (see `evaluate_and_predict`)."""
    return evaluate_and_predict(loaded, configs, batch_size, stress=stress)[1]


def write_predictions(
    data_file, predictions: Sequence[dict], out_file, prefix: str = PREFIX, format: str | None = None
) -> None:
    """The frames of `data_file` with the predictions added (`{prefix}energy` in eV and
    `{prefix}stress` in eV/A^3 in `info`, `{prefix}forces` in eV/A in `arrays`), written to
    `out_file` (extended XYZ unless its name says otherwise); the file's own labels kept."""
    import ase.io

    frames = ase.io.read(os.fspath(data_file), index=":", format=format)
    if len(frames) != len(predictions):
        raise ValueError(f"{data_file}: {len(frames)} frames but {len(predictions)} predictions")
    for atoms, pred in zip(frames, predictions):
        atoms.info[f"{prefix}energy"] = pred["energy"]
        atoms.arrays[f"{prefix}forces"] = np.asarray(pred["forces"])
        if "stress" in pred:
            atoms.info[f"{prefix}stress"] = np.asarray(pred["stress"]).reshape(-1)
    out_format = "extxyz" if str(out_file).endswith((".xyz", ".extxyz")) else None
    ase.io.write(os.fspath(out_file), frames, format=out_format)


_COLUMNS = (
    ("energy_rmse", "E RMSE", "meV/atom"),
    ("energy_mae", "E MAE", "meV/atom"),
    ("forces_rmse", "F RMSE", "meV/A"),
    ("forces_mae", "F MAE", "meV/A"),
    ("stress_rmse", "S RMSE", "meV/A^3"),
)


def error_table(metrics: dict) -> str:
    """A text table of `evaluate_configs`'s result: one row per config_type, then all."""
    groups = sorted(g for g in metrics if g != ALL) + ([ALL] if ALL in metrics else [])
    columns = [c for c in _COLUMNS if any(c[0] in metrics[g] for g in groups)]
    header = ["config_type", "n"] + [f"{name} ({unit})" for _, name, unit in columns]
    rows = [
        [g, str(metrics[g]["n_graphs"])]
        + [f"{metrics[g][key]:.2f}" if key in metrics[g] else "-" for key, _, _ in columns]
        for g in groups
    ]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def evaluate_file(model_dir, data_file, batch_size: int = 16, dtype=None, backend: str = "xla") -> dict:
    loaded = load_model(model_dir, dtype=dtype, backend=backend)
    return evaluate_configs(loaded, read_configurations(data_file), batch_size)


def source_batches(loaded, source, batch_size: int, dtype):
    """The (padded batch, config_types) items of one source, in a fixed order: a data file
    (read whole) or a prepared folder (`jaxtl prepare`; read one batch at a time)."""
    from jaxtl.train.data import epoch_batches

    path = Path(source)
    config = loaded.config
    if path.is_dir():
        from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches

        dataset = OnDiskDataset(path)
        if abs(dataset.r_max - config.r_max) > 1e-12:
            raise DataError(
                f"{path} was prepared with r_max {dataset.r_max} A, the model's is {config.r_max} A: "
                f"prepare it again with --r-max {config.r_max}"
            )
        if tuple(config.heads)[: len(dataset.heads)] != dataset.heads:
            raise DataError(
                f"{path}: heads {list(dataset.heads)} are not the model's first heads "
                f"{list(config.heads)[: len(dataset.heads)]}"
            )
        return streamed_batches(dataset, batch_size, seed=0, shuffle=False, dtype=dtype)(0)
    configs = read_configurations(path)
    check_elements(configs, config.atomic_numbers)
    dataset = GraphDataset(configs, config.r_max, heads=config.heads, progress=False)
    return epoch_batches(dataset, batch_size, seed=0, shuffle=False, dtype=dtype)(0)


def evaluate_sources(
    loaded, sources: Sequence[str | os.PathLike], batch_size: int = 16, n_devices: int = 1, stress: bool = True
) -> tuple[dict[str, dict], dict]:
    """Errors of `loaded` on many sources, on the data mesh the training uses.

    sources: data files (any ASE format, read one at a time) and prepared folders
        (streamed). Each device gets its own padded batches of `batch_size`
        structures; in a multi-process job (`jaxtl.train.distributed`) every process
        calls this with the same arguments and reads only its own batches.
    n_devices: devices of the mesh: this process's first n_devices, or all
        devices of all processes in a multi-process job.
    stress: compute stress errors where the data have stress labels.

    Returns ({source: {group: metrics}}, {group: metrics} over all sources); groups are
    "all" and each config_type, metrics as `evaluate_configs`.
    """
    from jaxtl.model.predict import make_predict
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.loop import make_evaluator

    dtype = np.float64 if loaded.config.dtype == "float64" else np.float32
    cfg = TrainConfig(
        dtype=loaded.config.dtype, n_devices=n_devices, compute_stress=stress, progress_bar=False, plot=False
    )
    evaluator = make_evaluator(make_predict(loaded.module), cfg)
    total = MetricsAccumulator()
    out = {}
    for source in sources:
        acc = MetricsAccumulator()
        out[os.fspath(source)] = evaluator(loaded.variables, source_batches(loaded, source, batch_size, dtype), acc)[1]
        total.merge(acc)
    return out, total.result()
