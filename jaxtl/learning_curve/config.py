"""`LearningCurveConfig`: what a learning-curve grid trains, composed of small frozen settings.

Saved as OUT/grid_config.json; running again in the same OUT with other settings is an
error naming the key, except for the grid's axes (fractions, strategies, seeds), which
may change: each cell stands on its own, so a grid can grow over several runs; and a
larger epoch cap, which continues the cells that stopped at the old one.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from jaxtl.config_io import flat_items, write_text_atomic

SCRATCH = "scratch"
_FREEZE = re.compile(r"f(\d+)$")
# the keys a rerun may change: cells are independent, so the grid may grow
AXES = ("grid.fractions", "grid.strategies", "grid.seeds")


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """The data of the grid.

    Attributes:
        foundation: a jaxtl model folder, a mace-torch `.model` file or a released model's name.
        train_file: the pool the training subsets and the validation set are drawn from.
        test_file: every cell is tested on all of it.
        valid_fraction: share of the pool held out (per seed) for early stopping.
        batch_size: structures per training batch.
        energy_key, forces_key, stress_key: label keys of the files.
        head: head of a multi-head foundation.
    """

    foundation: str
    train_file: str
    test_file: str
    valid_fraction: float = 0.1
    batch_size: int = 10
    energy_key: str = "REF_energy"
    forces_key: str = "REF_forces"
    stress_key: str = "REF_stress"
    head: str | None = None


@dataclasses.dataclass(frozen=True)
class GridSettings:
    """The grid's axes: fractions of the training pool x strategies x seeds.

    Attributes:
        fractions: shares of the training part of the pool (after the validation set), in (0, 1].
        strategies: "scratch", "fN" (`--freeze N`, `counting`), or a fine-tuning strategy
            name of `jaxtl.finetune.make_strategy` (naive, lora, magnitude, replay, '+'-joined).
        seeds: number of seeds; seed s draws the validation set, the nested subsets, the
            initialisation and the data order.
    """

    fractions: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    strategies: tuple[str, ...] = ("scratch", "f5")
    seeds: int = 3

    def __post_init__(self):
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        object.__setattr__(self, "strategies", tuple(self.strategies))
        bad = [f for f in self.fractions if not 0.0 < f <= 1.0]
        if bad:
            raise ValueError(f"fractions must lie in (0, 1], got {bad}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be at least 1, got {self.seeds}")
        if not self.strategies:
            raise ValueError("give at least one strategy")


@dataclasses.dataclass(frozen=True)
class ConvergenceSettings:
    """When a cell has converged: the same rule for scratch and fine-tuning.

    Attributes:
        patience: stop after this many epochs without a lower validation loss; the
            best-validation weights (EMA when on) are kept.
        min_rel_improvement: a lower validation loss counts for `patience` only when it
            is below the last counted one by more than this fraction, so a cell whose
            loss creeps down by less than that over `patience` epochs has converged.
        max_epochs: cap on epochs; a cell that reaches it reports `hit_max_epochs`.
        scheduler_patience, lr_factor: ReduceLROnPlateau on the validation loss.
    """

    patience: int = 20
    min_rel_improvement: float = 0.01
    max_epochs: int = 400
    scheduler_patience: int = 5
    lr_factor: float = 0.8


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of every cell.

    Attributes:
        lr: learning rate of fine-tuning (frozen and adapter strategies).
        scratch_lr: learning rate of scratch training (mace-torch's default 0.01).
        dtype: "float32" or "float64".
        ema, ema_decay: evaluate and keep an exponential moving average of the weights.
        energy_weight, forces_weight: loss weights (energy per atom, forces).
        e0s: E0s of every cell ("average": least squares on the cell's training subset).
        counting: "mace" or "paper" counting of `fN`.
        lora_rank: rank of the LoRA strategies (None: the library's default).
    """

    lr: float = 0.005
    scratch_lr: float = 0.01
    dtype: str = "float32"
    ema: bool = True
    ema_decay: float = 0.99
    energy_weight: float = 1.0
    forces_weight: float = 100.0
    e0s: str = "average"
    counting: str = "mace"
    lora_rank: int | None = None


@dataclasses.dataclass(frozen=True)
class LearningCurveConfig:
    """Everything a learning-curve grid needs; `to_dict`/`from_dict` round-trip to JSON."""

    data: DataSettings
    grid: GridSettings = dataclasses.field(default_factory=GridSettings)
    convergence: ConvergenceSettings = dataclasses.field(default_factory=ConvergenceSettings)
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearningCurveConfig:
        return cls(
            DataSettings(**d["data"]),
            GridSettings(**d["grid"]),
            ConvergenceSettings(**d["convergence"]),
            TrainSettings(**d["train"]),
        )

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> LearningCurveConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def differences(self, other: LearningCurveConfig) -> list[str]:
        """Dotted keys whose values differ from this (saved) config's in `other`, leaving out
        the grid's axes and a larger `convergence.max_epochs` in `other`."""
        a, b = flat_items(self.to_dict()), flat_items(other.to_dict())
        grown = b["convergence.max_epochs"] > a["convergence.max_epochs"]
        return [
            k
            for k in sorted(set(a) | set(b))
            if k not in AXES and a.get(k) != b.get(k) and not (k == "convergence.max_epochs" and grown)
        ]


def difference_message(saved: LearningCurveConfig, config: LearningCurveConfig) -> str | None:
    """None when `config` may continue the grid of `saved` (`LearningCurveConfig.differences`),
    else "KEY is A there, B now (differing: ...)" for an error message."""
    differ = saved.differences(config)
    if not differ:
        return None
    before, now = flat_items(saved.to_dict()), flat_items(config.to_dict())
    key = differ[0]
    return f"{key} is {before.get(key)!r} there, {now.get(key)!r} now (differing: {', '.join(differ)})"


def freeze_level(strategy: str) -> int | None:
    """N of a strategy named "fN", else None."""
    match = _FREEZE.match(strategy)
    return int(match.group(1)) if match else None


def check_strategy(name: str) -> None:
    """Raise ValueError for a name that is neither scratch, fN nor a fine-tuning strategy."""
    if name == SCRATCH or freeze_level(name) is not None:
        return
    from jaxtl.finetune.strategies import PARTS, make_strategy

    try:
        if "freeze" in name.split("+"):
            raise ValueError(name)  # freezing is spelled fN here
        make_strategy(name)
    except ValueError:
        raise ValueError(
            f"unknown strategy {name!r}: use scratch, fN (mace-torch --freeze N, e.g. f5), or "
            f"one of {', '.join(p for p in PARTS if p != 'freeze')} ('+'-joined, e.g. "
            f"replay+lora)"
        ) from None
