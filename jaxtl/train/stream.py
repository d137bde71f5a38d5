"""`train_from_prepared`: train a new MACE from a prepared (on-disk) dataset, streaming.

The recipe of `jaxtl.train.run.train_from_scratch` (E0s by least squares, scale
and shift from the training labels, avg_num_neighbors from the neighbour lists)
computed in one pass over the structures, one at a time, so that memory does not
grow with the dataset: the least-squares E0s are fitted on the distinct
compositions (each row weighted by the square root of its multiplicity, with the
mean energy of its structures: the same minimiser as one row per structure).
The validation set is a prepared folder of its own, or a seeded fraction of the
training indices (the split `read_splits` makes). Not applied here, unlike the
in-memory path: IsolatedAtom frames as E0s, --max-force and --train-fraction.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches
from jaxtl.train.config import TrainConfig
from jaxtl.train.e0s import lstsq_e0s
from jaxtl.train.loop import TrainResult, train

log = logging.getLogger("jaxtl.train")


class Subset:
    """Some structures of an `OnDiskDataset` (the dataset interface `streamed_batches` uses)."""

    def __init__(self, dataset: OnDiskDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices, np.int64)
        self.r_max, self.heads = dataset.r_max, dataset.heads
        self.n_nodes, self.n_edges = dataset.n_nodes[self.indices], dataset.n_edges[self.indices]
        self.max_in_degree = dataset.max_in_degree  # an upper bound: the budgets stay valid

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int):
        return self.dataset.item(int(self.indices[i]))

    def config_type(self, i: int) -> str:
        return self.dataset.config_type(int(self.indices[i]))


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Prepared folders to train on (`jaxtl prepare`) and how they are batched.

    Attributes:
        train_dir: the training set.
        valid_dir: the validation set; None: `valid_fraction` of train_dir's structures.
        valid_fraction: fraction held out when valid_dir is None.
        batch_size, valid_batch_size: structures per padded (device) batch.
        seed: seed of the split and of the epoch order.
    """

    train_dir: str
    valid_dir: str | None = None
    valid_fraction: float = 0.1
    batch_size: int = 10
    valid_batch_size: int = 10
    seed: int = 123


def split(data: PreparedData) -> tuple[Subset, Subset | OnDiskDataset | None]:
    full = OnDiskDataset(data.train_dir)
    if data.valid_dir:
        return Subset(full, np.arange(len(full))), OnDiskDataset(data.valid_dir)
    # the split of `jaxtl.train.data.read_splits`, in its order
    order = np.random.default_rng(data.seed).permutation(len(full))
    n_valid = max(1, round(data.valid_fraction * len(full))) if len(full) > 1 else 0
    return Subset(full, order[n_valid:]), (Subset(full, order[:n_valid]) if n_valid else None)


def label_statistics(dataset, atomic_numbers: Sequence[int]) -> tuple[np.ndarray, float, float]:
    """(E0s [n_elements], scale, shift) as `rms_forces_scaling` does, in one pass over `dataset`."""
    column = {int(z): i for i, z in enumerate(atomic_numbers)}
    compositions: dict[tuple, list] = {}  # composition -> [structures, energy sum]
    per_structure = []  # (composition, energy, atoms) of labelled structures, for the shift
    force_sq, force_n = 0.0, 0
    for i in range(len(dataset)):
        item = dataset.item(i)
        z = np.asarray(item.graph.atomic_numbers)
        counts = np.zeros(len(column))
        for value, n in zip(*np.unique(z, return_counts=True)):
            counts[column[int(value)]] = n
        key = tuple(counts)
        if float(item.labels.energy_weight[0]) > 0:
            entry = compositions.setdefault(key, [0, 0.0])
            entry[0] += 1
            entry[1] += float(item.labels.energy[0])
            per_structure.append((key, float(item.labels.energy[0]), len(z)))
        if float(item.labels.forces_weight[0]) > 0:
            force_sq += float(np.sum(np.asarray(item.labels.forces) ** 2))
            force_n += item.labels.forces.size
    rows = np.array([k for k in compositions])
    m = np.array([v[0] for v in compositions.values()], np.float64)
    mean_e = np.array([v[1] for v in compositions.values()]) / np.maximum(m, 1)
    e0 = np.asarray(lstsq_e0s(rows * np.sqrt(m)[:, None], mean_e * np.sqrt(m)))
    per_atom = [(e - np.dot(k, e0)) / n for k, e, n in per_structure]
    shift = float(np.mean(per_atom)) if per_atom else 0.0
    scale = float(np.sqrt(force_sq / force_n)) if force_n else 1.0
    return e0, scale or 1.0, shift


def train_from_prepared(data: PreparedData, out_dir: str | Path, model: Mapping | None = None,
                        train_config: TrainConfig | None = None, resume: bool = False) -> TrainResult:
    """Train a new MACE on prepared folders, streaming. `model` holds MACEConfig fields
    (r_max is the prepared set's); each process reads only its own batches."""
    from jaxtl.model import MACE, MACEConfig, init_variables, make_predict
    from jaxtl.model_io import save_model

    cfg = train_config or TrainConfig()
    model = dict(model or {})
    train_set, valid_set = split(data)
    if abs(float(model.get("r_max", train_set.r_max)) - train_set.r_max) > 1e-12:
        raise ValueError(f"{data.train_dir} was prepared with r_max {train_set.r_max} A, the model asks for "
                         f"{model['r_max']} A: prepare it again with --r-max {model['r_max']}")
    model["r_max"] = train_set.r_max
    zs = sorted({int(z) for i in range(len(train_set)) for z in np.unique(train_set.item(i).graph.atomic_numbers)})
    model.setdefault("atomic_numbers", tuple(zs))
    e0, scale, shift = label_statistics(train_set, model["atomic_numbers"])
    n_layers = int(model.get("num_interactions", MACEConfig.num_interactions))
    avg = float(train_set.n_edges.sum() / max(train_set.n_nodes.sum(), 1))
    model.setdefault("avg_num_neighbors", (avg,) * n_layers)
    model.setdefault("dtype", cfg.dtype)
    config = MACEConfig(**model)
    log.info("streaming %d training structures from %s; E0s %s, scale %.4f, shift %.4f", len(train_set),
             data.train_dir, dict(zip(config.atomic_numbers, e0.round(4))), scale, shift)

    variables = init_variables(config, seed=cfg.seed)
    constants = dict(variables["constants"])
    constants["atomic_energies"] = e0[None].astype(constants["atomic_energies"].dtype)
    constants["scale"] = np.array([scale], constants["scale"].dtype)
    constants["shift"] = np.array([shift], constants["shift"].dtype)
    variables = {"params": variables["params"], "constants": constants}

    dtype = np.float64 if cfg.dtype == "float64" else np.float32
    train_batches = streamed_batches(train_set, data.batch_size, data.seed, shuffle=True, dtype=dtype)
    valid_batches = (streamed_batches(valid_set, data.valid_batch_size, data.seed, shuffle=False, dtype=dtype)(0)
                     if valid_set is not None else [])
    result = train(make_predict(MACE(config, cfg.backend)), variables, train_batches, valid_batches, cfg, out_dir,
                   resume=resume, model_config=config.to_dict())
    save_model(Path(out_dir) / "model", config, jax.tree_util.tree_map(np.asarray, result.variables),
               {"trained_on": data.train_dir, "data": dataclasses.asdict(data), "metrics": result.metrics})
    return result
