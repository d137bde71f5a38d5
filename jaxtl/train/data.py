"""From structure files to the padded batches the training loop consumes.

Reading, splitting (by fraction or file), filtering, neighbour lists (once per
dataset), fixed padding budgets and reproducible epoch order. Shared by
`jaxtl train`, `jaxtl finetune` and `jaxtl distill`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxtl.graph.batching import Budget, pad_batch
from jaxtl.graph.dataset import Budgets, EpochBatches, GraphDataset, batch_iterator, choose_budgets
from jaxtl.graph.io import (
    LABELS,
    Configuration,
    DataError,
    DataKeys,
    check_config_type_weights,
    is_isolated_atom,
    read_configurations,
)
from jaxtl.train.e0s import isolated_e0s

log = logging.getLogger("jaxtl.train")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the data come from and how they are batched.

    Attributes:
        train_file: structures to train on (extended XYZ or anything ASE reads).
        valid_file: validation structures; None: `valid_fraction` of train_file.
        valid_fraction: fraction of train_file held out when valid_file is None.
        test_file: optional test structures (metrics reported at the end).
        keys: label keys (REF_energy, REF_forces, ... with ASE results as fallback).
        batch_size: structures per training batch (mace-torch default 10).
        valid_batch_size: structures per evaluation batch.
        max_force: drop structures with any |F| component above this (eV/A); None keeps all.
        train_fraction: use only this fraction of the training structures (data-efficiency studies).
        seed: seed of the split and of the epoch order.
        cache_dir: where neighbour lists are cached (None: no cache).
        config_type_weights: loss weight of each config_type (mace's
            --config_type_weights; types not named weigh 1); None: all 1.
    """

    train_file: str
    valid_file: str | None = None
    valid_fraction: float = 0.1
    test_file: str | None = None
    keys: DataKeys = DataKeys()
    batch_size: int = 10
    valid_batch_size: int = 10
    max_force: float | None = None
    train_fraction: float = 1.0
    seed: int = 123
    cache_dir: str | None = None
    config_type_weights: Mapping[str, float] | None = None


@dataclasses.dataclass
class Splits:
    """The structures of each split; `isolated`: the IsolatedAtom frames of the
    training file (not trained on; their energies are E0s); `isolated_e0s`: {Z: eV}
    of those frames."""

    train: list[Configuration]
    valid: list[Configuration]
    test: list[Configuration]
    isolated_e0s: dict[int, float]
    isolated: list[Configuration] = dataclasses.field(default_factory=list)


def _filter(configs: list[Configuration], max_force: float | None, where: str) -> list[Configuration]:
    if max_force is None:
        return configs
    kept = [c for c in configs if c.forces is None or np.abs(c.forces).max() <= max_force]
    if len(kept) < len(configs):
        log.warning(
            "%s: dropped %d of %d structures with |F| > %g eV/A",
            where,
            len(configs) - len(kept),
            len(configs),
            max_force,
        )
    return kept


def _read(path: str, cfg: DataConfig, require: Sequence[str]) -> tuple[list[Configuration], list[Configuration]]:
    """(structures, IsolatedAtom frames) of one file."""
    configs = read_configurations(path, cfg.keys, require=require, config_type_weights=cfg.config_type_weights)
    return [c for c in configs if not is_isolated_atom(c)], [c for c in configs if is_isolated_atom(c)]


def describe_labels(configs: Sequence[Configuration], where: str) -> str:
    """One line: how many structures carry each label, by config_type."""
    types = Counter(c.config_type for c in configs)
    have = {name: sum(getattr(c, name) is not None for c in configs) for name in LABELS}
    labels = ", ".join(f"{name} {n}" for name, n in have.items() if n)
    return (
        f"{where}: {len(configs)} structures ({', '.join(f'{t} {n}' for t, n in types.items())}); "
        f"with labels: {labels or 'none'}"
    )


def read_splits(cfg: DataConfig, require: Sequence[str] = ()) -> Splits:
    """Read and split the structures; raises `DataError` naming file and frame.

    Frames with only some labels are kept (the missing ones weigh 0); the
    IsolatedAtom frames of the training file are set apart (`Splits.isolated`) and
    those of the other files dropped, as in mace-torch. A training file with neither
    energies nor forces under the configured keys is an error naming the keys.
    """
    train, isolated = _read(cfg.train_file, cfg, require)
    if train and not any(c.energy is not None or c.forces is not None for c in train):
        raise DataError(
            f"{cfg.train_file}: no structure has an energy ('{cfg.keys.energy}') or forces "
            f"('{cfg.keys.forces}'); set --energy-key/--forces-key to the keys the file uses"
        )
    for name in ("energy", "forces"):
        if train and all(getattr(c, name) is None for c in train):
            log.warning("%s: no structure has %s under '%s'", cfg.train_file, name, getattr(cfg.keys, name))
    train = _filter(train, cfg.max_force, cfg.train_file)
    rng = np.random.default_rng(cfg.seed)
    if cfg.valid_file:
        valid = _filter(_read(cfg.valid_file, cfg, require)[0], cfg.max_force, cfg.valid_file)
    else:
        order = rng.permutation(len(train))
        n_valid = max(1, int(round(cfg.valid_fraction * len(train)))) if len(train) > 1 else 0
        valid = [train[i] for i in order[:n_valid]]
        train = [train[i] for i in order[n_valid:]]
    if cfg.train_fraction < 1.0:
        keep = np.sort(rng.permutation(len(train))[: max(1, int(round(cfg.train_fraction * len(train))))])
        train = [train[i] for i in keep]
    test = _read(cfg.test_file, cfg, require)[0] if cfg.test_file else []
    if not train:
        raise DataError(f"{cfg.train_file}: no training structures left after splitting and filtering")
    if cfg.config_type_weights:
        check_config_type_weights(cfg.config_type_weights, train + valid + isolated, cfg.train_file)
    log.info(describe_labels(train, "train"))
    return Splits(train, valid, test, isolated_e0s(isolated), isolated)


class PlannedBatches(Sequence):
    """The (Batch, config_types) of an epoch plan, each padded only when indexed.

    `shape_key(i)` and `config_types(i)` answer without padding, so that a process of
    a multi-process job pads only the batches of its own devices
    (`jaxtl.train.parallel.group_batches`).
    """

    def __init__(self, epoch: EpochBatches):
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.epoch.plan)

    def shape_key(self, i: int) -> Budget:
        return self.epoch.plan[i][0]

    def config_types(self, i: int) -> list:
        return [self.epoch.dataset.configs[j].config_type for j in self.epoch.plan[i][1]]

    def __getitem__(self, i: int):
        budget, members = self.epoch.plan[i]
        dataset = self.epoch.dataset
        batch = pad_batch(
            [dataset.items[j] for j in members],
            *budget[:3],
            r_max=dataset.r_max,
            dtype=self.epoch.dtype,
            n_neighbour=budget.n_neighbour,
        )
        return batch, self.config_types(i)


def epoch_batches(
    dataset: GraphDataset, batch_size: int, seed: int, shuffle: bool, budgets: Budgets | None = None, dtype=np.float64
) -> Callable[[int], PlannedBatches]:
    """epoch -> the (Batch, config_types) of the epoch in an order fixed by (seed, epoch).

    Budgets are fixed once for the dataset, so every epoch reuses the same few shapes.
    Batches are padded when indexed (`PlannedBatches`).
    """
    budgets = budgets or choose_budgets(dataset, batch_size)

    def at(epoch: int) -> PlannedBatches:
        return PlannedBatches(
            batch_iterator(dataset, batch_size, budgets, shuffle=shuffle, seed=seed, epoch=epoch, dtype=dtype)
        )

    at.budgets = budgets  # type: ignore[attr-defined]
    return at


def average_num_neighbors(dataset: GraphDataset) -> float:
    """Mean number of incoming edges per atom (mace's avg_num_neighbors)."""
    return float(dataset.n_edges.sum() / max(dataset.n_nodes.sum(), 1))
