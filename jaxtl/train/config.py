"""`TrainConfig`: every training setting in one frozen dataclass that round-trips to JSON/YAML."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxtl.train.loss import LossConfig, needs_stress
from jaxtl.train.optimizer import OptimizerConfig
from jaxtl.train.stage_two import StageTwoConfig

_NESTED = {"loss": LossConfig, "optimizer": OptimizerConfig, "stage_two": StageTwoConfig}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (mace-torch defaults unless noted).

    Attributes:
        max_num_epochs: epochs to run.
        patience: stop after this many epochs without a better validation loss.
        min_rel_improvement: an epoch counts as better for `patience` only when its
            validation loss is below the last such epoch's by more than this fraction
            (0: any decrease). The best weights are those of the lowest loss either way.
        seed: seed of the run (data order is a function of (seed, epoch)).
        dtype: "float32" (default here) or "float64" (needs jax_enable_x64);
            floating batch arrays and variables are cast to it.
        loss: loss kind and weights.
        optimizer: optimiser and lr schedule.
        ema: keep an EMA of the params, used for evaluation and checkpoints.
        ema_decay: EMA decay (mace-torch 0.99).
        stage_two: stage-two (SWA) settings.
        compute_stress: ask the model for stress/virials; None: when the loss uses them.
        n_devices: devices of the data mesh: this process's first n_devices, or in
            a multi-process job (`jaxtl.train.distributed`) all devices of all
            processes. Each step consumes n_devices padded batches of one shape
            (one per device), so the global batch is n_devices x the batch size.
        prefetch: data-parallel steps (training, validation and test) read, padded and
            stacked ahead on a background thread while the device computes
            (`jaxtl.train.prefetch`); 0: on the calling thread. Results do not depend on it.
        checkpoint_interval_s: write the checkpoints (latest, and best when it changed)
            after the first epoch whose end is at least this many seconds of wall time
            after the last write; 0: after every epoch. The first epoch, the last, an early
            stop and (in a single process) an error or SIGTERM under the `jaxtl` command
            always write them, so a killed run resumes, exactly, from at most this interval
            plus one epoch ago. Results do not depend on it.
        progress_bar: show a tqdm bar.
        plot: write a learning-curve PNG (needs matplotlib).
        backend: "xla", or "cueq" for NVIDIA cuEquivariance kernels (`jaxtl.model.cueq`).
    """

    max_num_epochs: int = 2048
    patience: int = 2048
    min_rel_improvement: float = 0.0
    seed: int = 123
    dtype: str = "float32"
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    ema: bool = False
    ema_decay: float = 0.99
    stage_two: StageTwoConfig = dataclasses.field(default_factory=StageTwoConfig)
    compute_stress: bool | None = None
    n_devices: int = 1
    prefetch: int = 2
    checkpoint_interval_s: float = 30.0
    progress_bar: bool = True
    plot: bool = True
    backend: str = "xla"

    def __post_init__(self):
        if not 0.0 <= self.min_rel_improvement < 1.0:
            raise ValueError(f"min_rel_improvement must be in [0, 1), got {self.min_rel_improvement}")
        if self.checkpoint_interval_s < 0:
            raise ValueError(f"checkpoint_interval_s must be >= 0, got {self.checkpoint_interval_s}")
        if self.prefetch < 0:
            raise ValueError(f"prefetch must be >= 0 steps, got {self.prefetch}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        from jaxtl.model.cueq import check_backend

        check_backend(self.backend)

    @property
    def wants_stress(self) -> bool:
        return needs_stress(self.loss.loss) if self.compute_stress is None else self.compute_stress

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        for key, sub in _NESTED.items():
            if key in d and isinstance(d[key], dict):
                d[key] = sub(**d[key])
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        """Write JSON (or YAML for a .yaml/.yml path)."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(path.read_text()))
        return cls.from_dict(json.loads(path.read_text()))
