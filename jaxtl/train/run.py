"""`train_from_scratch`: data files in, a trained MACE model folder out.

The mace-torch recipe for a new model: E0s from IsolatedAtom frames or a least-
squares fit ("average"; see `jaxtl.train.e0s`), `avg_num_neighbors` from the
training set, and scale/shift from the training labels (`rms_forces_scaling`:
shift = mean per-atom interaction energy, scale = RMS force), then the training
loop. Structures carrying a `head` key train the head of that name: the model gets
one head per name (in order of first appearance), each with its own E0s, scale and
shift, as mace-torch's multi-head models.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxtl.config_io import ConfigIO, record_config
from jaxtl.graph.dataset import GraphDataset
from jaxtl.graph.io import Configuration, check_elements
from jaxtl.model import MACE, MACEConfig, init_variables, make_predict
from jaxtl.model_io import save_model
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig, average_num_neighbors, epoch_batches, read_splits
from jaxtl.train.distributed import is_primary
from jaxtl.train.e0s import E0Spec, average_e0s, data_elements, resolve_e0s
from jaxtl.train.loop import TrainResult, train

log = logging.getLogger("jaxtl.train")
CONFIG_FILE = "scratch_config.yaml"
SCALINGS = ("rms_forces_scaling", "std_scaling", "no_scaling")
# a resumed run may be lengthened, and with it the start of stage two moves (`jaxtl.train.train`);
# its input files may have moved with the run folder, and a progress bar only shows it
RESUME_MAY_CHANGE = (
    "train.max_num_epochs",
    "train.stage_two.start_epoch",
    "train.progress_bar",
    "train.checkpoint_interval_s",
    "data.*_file",
    "data.cache_dir",
)


def fit_average_e0s(configs: list[Configuration], atomic_numbers) -> np.ndarray:
    """Least-squares E0s [n_elements] from total energies and element counts (0 for absent elements)."""
    fitted = average_e0s(configs, atomic_numbers)
    return np.array([fitted.get(int(z), 0.0) for z in atomic_numbers])


def head_e0s(spec: E0Spec | None, splits, heads, atomic_numbers) -> tuple[np.ndarray, dict]:
    """atomic_energies [n_heads, n_elements] (eV) and {head: how they were found}.

    Each head's E0s come from its own structures; IsolatedAtom frames without a head
    key serve every head that has none of its own.
    """
    rows, sources = [], {}
    shared = [c for c in splits.isolated if c.head == "Default"]
    for head in heads:
        own = [c for c in splits.train if c.head == head]
        isolated = [c for c in splits.isolated if c.head == head] or shared
        needed = data_elements([c for c in splits.train + splits.valid + splits.test if c.head == head])
        row, sources[head] = resolve_e0s(spec, own, atomic_numbers, isolated, needed=needed)
        rows.append(row)
    return np.stack(rows), sources


def scale_shift(configs: list[Configuration], atomic_numbers, e0s: np.ndarray, scaling: str) -> tuple[float, float]:
    """mace-torch's `rms_forces_scaling` / `std_scaling` / `no_scaling`."""
    index = {z: i for i, z in enumerate(atomic_numbers)}
    per_atom = [
        (c.energy - sum(e0s[index[int(z)]] for z in c.atomic_numbers)) / c.n_atoms
        for c in configs
        if c.energy is not None
    ]
    shift = float(np.mean(per_atom)) if per_atom else 0.0
    if scaling == "no_scaling":
        return 1.0, 0.0
    if scaling == "std_scaling":
        return float(np.std(per_atom)) or 1.0, shift
    forces = np.concatenate([c.forces.reshape(-1) for c in configs if c.forces is not None] or [np.ones(1)])
    return float(np.sqrt(np.mean(forces**2))) or 1.0, shift


@dataclasses.dataclass(frozen=True)
class ScratchConfig(ConfigIO):
    """Everything training a new MACE computes; saved as OUT/scratch_config.yaml.

    Attributes:
        data: the structures and their batching.
        model: `MACEConfig` fields (r_max, hidden_irreps, ...); atomic_numbers, heads
            and avg_num_neighbors default to the data's, the rest to MACEConfig's.
        train: optimisation, loss, EMA, stage two, epochs, seed of init and data order.
        e0s: mace's --E0s (see `jaxtl.train.e0s`); None: the IsolatedAtom frames when
            the training file has them, else "average".
        scaling: "rms_forces_scaling", "std_scaling" or "no_scaling" (scale/shift from the data).
    """

    data: DataConfig
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    e0s: E0Spec | None = None
    scaling: str = "rms_forces_scaling"

    def __post_init__(self):
        # lists from a YAML file as the tuples MACEConfig holds, so a saved config compares equal
        object.__setattr__(self, "model", {k: tuple(v) if isinstance(v, list) else v for k, v in self.model.items()})
        if self.scaling not in SCALINGS:
            raise ValueError(f"ScratchConfig.scaling must be one of {SCALINGS}, got {self.scaling!r}")


def train_from_scratch(config: ScratchConfig, out_dir: str | Path, *, resume: bool = False) -> TrainResult:
    """Train a new MACE as `config` says; the run folder `out_dir` gets checkpoints, logs,
    scratch_config.yaml and the model folder out_dir/model.

    resume: continue an interrupted run in `out_dir` exactly (same config, a larger
    `train.max_num_epochs` allowed).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record_config(config, out_dir / CONFIG_FILE, resume, may_change=RESUME_MAY_CHANGE, write=is_primary())
    data, train_config = config.data, config.train
    splits = read_splits(data)
    model = _model_fields_from_data(config.model, splits)
    heads, atomic_numbers = tuple(model["heads"]), tuple(model["atomic_numbers"])
    sets = _Datasets.of(splits, float(model.get("r_max", MACEConfig.r_max)), heads, data.cache_dir)
    stats = HeadStatistics.of(splits, heads, atomic_numbers, config.e0s, config.scaling)
    n_layers = int(model.get("num_interactions", MACEConfig.num_interactions))
    model.setdefault("avg_num_neighbors", (average_num_neighbors(sets.train),) * n_layers)
    model.setdefault("dtype", train_config.dtype)
    model_config = MACEConfig(**model)
    stats.log(heads, atomic_numbers)
    log.info("avg_num_neighbors %.3f", model_config.avg_num_neighbors[0])

    variables = stats.apply(init_variables(model_config, seed=train_config.seed))
    train_batches, valid_batches, test_batches = sets.batches(data, train_config.dtype)
    result = train(
        make_predict(MACE(model_config, train_config.backend)),
        variables,
        train_batches,
        valid_batches,
        train_config,
        out_dir,
        test_batches=test_batches,
        resume=resume,
        model_config=model_config.to_dict(),
    )
    save_model(
        out_dir / "model",
        model_config,
        jax.tree_util.tree_map(np.asarray, result.variables),
        {
            "trained_on": data.train_file,
            "data": dataclasses.asdict(data) | {"keys": None},
            "e0s": stats.sources,
            "metrics": result.metrics,
        },
    )
    return result


def _model_fields_from_data(model: Mapping[str, Any], splits) -> dict:
    """`MACEConfig` fields with atomic_numbers (the elements in the data, sorted) and heads
    (the data's in order of first appearance, else "Default") filled in where not given.

    Raises:
        DataError: a structure with an element the given atomic_numbers leave out.
    """
    model = dict(model)
    every = splits.train + splits.valid + splits.test
    model.setdefault("atomic_numbers", tuple(sorted({int(z) for c in every for z in c.atomic_numbers})))
    check_elements(every, model["atomic_numbers"])
    model.setdefault("heads", tuple(dict.fromkeys(c.head for c in every)) or ("Default",))
    return model


@dataclasses.dataclass(frozen=True)
class _Datasets:
    """The graphs of the training, validation and test structures (None: no structures)."""

    train: GraphDataset
    valid: GraphDataset | None
    test: GraphDataset | None

    @classmethod
    def of(cls, splits, r_max: float, heads: tuple[str, ...], cache_dir) -> _Datasets:
        def dataset(configs):
            return GraphDataset(configs, r_max, heads=heads, cache_dir=cache_dir)

        return cls(
            dataset(splits.train),
            dataset(splits.valid) if splits.valid else None,
            dataset(splits.test) if splits.test else None,
        )

    def batches(self, data: DataConfig, dtype: str) -> tuple[Any, list, list | None]:
        """(epoch -> shuffled training batches, validation batches, test batches or None)."""
        dtype = np.float64 if dtype == "float64" else np.float32
        train_batches = epoch_batches(self.train, data.batch_size, data.seed, shuffle=True, dtype=dtype)
        valid_batches = (
            epoch_batches(self.valid, data.valid_batch_size, data.seed, False, dtype=dtype)(0) if self.valid else []
        )
        test_batches = (
            epoch_batches(self.test, data.valid_batch_size, data.seed, False, dtype=dtype)(0) if self.test else None
        )
        log.info("batch shapes per epoch: %s", train_batches.budgets.main)
        return train_batches, valid_batches, test_batches


@dataclasses.dataclass(frozen=True)
class HeadStatistics:
    """Per-head reference energies and scaling from the training data.

    Attributes:
        e0s: atomic_energies [n_heads, n_elements] (eV).
        sources: {head: how its E0s were found}.
        scale, shift: [n_heads] of the interaction energy (eV per atom).
    """

    e0s: np.ndarray
    sources: dict
    scale: np.ndarray
    shift: np.ndarray

    @classmethod
    def of(cls, splits, heads, atomic_numbers, e0s: E0Spec | None, scaling: str) -> HeadStatistics:
        """E0s from `e0s` (`head_e0s`), scale and shift from each head's own training structures."""
        e0, sources = head_e0s(e0s, splits, heads, atomic_numbers)
        scale, shift = np.ones(len(heads)), np.zeros(len(heads))
        for h, head in enumerate(heads):
            own = [c for c in splits.train if c.head == head]
            scale[h], shift[h] = scale_shift(own, atomic_numbers, e0[h], scaling)
        return cls(e0, sources, scale, shift)

    def log(self, heads, atomic_numbers) -> None:
        for h, head in enumerate(heads):
            log.info(
                "head %s: E0s %s (%s), scale %.4f, shift %.4f",
                head,
                {z: round(float(e), 4) for z, e in zip(atomic_numbers, self.e0s[h])},
                self.sources[head],
                self.scale[h],
                self.shift[h],
            )

    def apply(self, variables: dict) -> dict:
        """`variables` with these E0s, scale and shift as constants (in the constants' dtypes)."""
        constants = dict(variables["constants"])
        constants["atomic_energies"] = self.e0s.astype(constants["atomic_energies"].dtype)
        constants["scale"] = self.scale.astype(constants["scale"].dtype)
        constants["shift"] = self.shift.astype(constants["shift"].dtype)
        return {"params": variables["params"], "constants": constants}
