"""`FinetuneConfig`: what a fine-tuning run computes, composed of small frozen settings.

    FinetuneConfig(
        foundation=FoundationConfig("mace-mp-0-medium"),
        data=DataConfig(train_file="aspirin.xyz", batch_size=5),
        strategy=StrategyConfig(freeze=6),
        train=TrainConfig(max_num_epochs=50),
    )

The data settings are `jaxtl.train.data.DataConfig` and the optimisation settings
`jaxtl.train.TrainConfig`, the same objects `train_from_scratch` takes. The whole tree
round-trips through `to_dict`/`from_dict` and is saved as OUT/finetune_config.yaml.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from pathlib import Path

from jaxtl.config_io import ConfigIO, config_differences
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig

CONFIG_FILE = "finetune_config.yaml"
# a resumed run may be lengthened, and with it the start of stage two moves (`jaxtl.train.train`);
# its input files may have moved with the run folder
RESUME_MAY_CHANGE = (
    "train.max_num_epochs",
    "train.stage_two.start_epoch",
    "train.checkpoint_interval_s",
    "data.*_file",
    "data.cache_dir",
    "foundation.model",
    "strategy.replay_files",
)


@dataclasses.dataclass(frozen=True)
class FoundationConfig:
    """The model fine-tuning starts from.

    Attributes:
        model: a jaxtl model folder, a mace-torch `.model` file (converted into
            OUT/foundation) or a released model's name such as "mace-mp-0-medium"
            (`jaxtl.foundations`: downloaded and converted once into the cache).
        head: the head of a multi-head foundation to fine-tune (needed when it has several).
        check_conversion: verify a converted `.model` file against mace-torch.
    """

    model: str
    head: str | None = None
    check_conversion: bool = True

    def __post_init__(self):
        object.__setattr__(self, "model", str(self.model))


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """Which weights train and how (`jaxtl.finetune.strategies`).

    Attributes:
        name: "naive", "freeze" (default: the freezing fields below; none given = naive),
            "lora", "magnitude", "replay", "replay+lora" or any '+'-joined parts. With
            adapters the foundation's weights are frozen unless freezing fields are
            given (then those rule the non-adapted weights).
        freeze: mace-torch's --freeze N (1-4 embedding, 5 + interactions, 6 + products,
            7 everything; 0 nothing); None: no layer freezing.
        counting: "mace" (upstream thresholds by name) or "paper" (the arXiv 2502.15582
            fork's child-module count).
        freeze_patterns, train_patterns: globs over parameter paths to freeze / to train
            (`jaxtl.finetune.pattern_labels`); not together with `freeze`.
        lr_factors: soft freezing, e.g. {"interactions_lr_factor": 0.1}.
        lora_rank, lora_alpha: W = W0 + (alpha/rank) A B (defaults 4 and rank).
        adapter_patterns: globs over parameter paths choosing the adapted weights
            (None: the adapter's default).
        replay_size, replay_weight, replay_files, replay_rattle: the pseudolabelled
            replay set (`jaxtl.finetune.replay.Replay`; rattle in A).
        cut_frozen_gradients: do not compute gradients of frozen leaves (same result, faster).
    """

    name: str = "freeze"
    freeze: int | None = None
    counting: str = "mace"
    freeze_patterns: tuple[str, ...] = ()
    train_patterns: tuple[str, ...] = ()
    lr_factors: Mapping[str, float] | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    adapter_patterns: tuple[str, ...] | None = None
    replay_size: int | None = None
    replay_weight: float | None = None
    replay_files: tuple[str, ...] = ()
    replay_rattle: float | None = None
    cut_frozen_gradients: bool = True

    def __post_init__(self):
        for name in ("freeze_patterns", "train_patterns", "replay_files", "adapter_patterns"):
            value = getattr(self, name)
            if isinstance(value, (str, Path)):
                raise ValueError(f"StrategyConfig.{name} is a sequence of strings, got the string {value!r}")
            if value is not None:
                object.__setattr__(self, name, tuple(str(v) for v in value))
        if self.counting not in ("mace", "paper"):
            raise ValueError(f"StrategyConfig.counting must be 'mace' or 'paper', got {self.counting!r}")
        if self.freeze is not None and (self.freeze_patterns or self.train_patterns):
            raise ValueError("StrategyConfig: give either freeze or freeze_patterns/train_patterns, not both")
        if self.lr_factors is not None:
            object.__setattr__(self, "lr_factors", {str(k): float(v) for k, v in self.lr_factors.items()})

    @property
    def chooses_labels(self) -> bool:
        """Whether freezing fields are given (they then rule the non-adapted weights)."""
        return self.freeze is not None or bool(self.freeze_patterns or self.train_patterns or self.lr_factors)


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(ConfigIO):
    """Everything a fine-tuning run computes.

    Attributes:
        foundation: the starting model.
        data: the structures and their batching (`train_file`, `valid_file` or
            `valid_fraction`, `test_file`, `keys`, `batch_size`, `seed` of the split ...).
        strategy: which weights train and how.
        train: optimisation, loss, EMA, stage two, epochs, seed of init and data order.
        e0s: "average", "estimated", "foundation", "isolated" or given E0s ({Z: eV};
            see `jaxtl.finetune.fit_e0s`); None: the IsolatedAtom frames of the
            training file when it has them, else "average".

    >>> config = FinetuneConfig(FoundationConfig("mace-mp-0-medium"), DataConfig("dft.xyz", batch_size=5),
    ...                         StrategyConfig("lora", lora_rank=4), TrainConfig(max_num_epochs=50))
    >>> FinetuneConfig.from_dict(config.to_dict()) == config
    True
    >>> config.differences(config.replace(strategy=StrategyConfig("lora", lora_rank=8)))
    ['strategy.lora_rank']
    """

    foundation: FoundationConfig
    data: DataConfig
    strategy: StrategyConfig = dataclasses.field(default_factory=StrategyConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    e0s: str | Mapping | None = None

    def differences(self, other: FinetuneConfig) -> list[str]:
        """Dotted fields that differ from `other`'s, leaving out those a resumed run may
        change (`RESUME_MAY_CHANGE`)."""
        return [
            k
            for k in config_differences(self, other)
            if not any(fnmatch.fnmatchcase(k, pattern) for pattern in RESUME_MAY_CHANGE)
        ]
