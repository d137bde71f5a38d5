"""Training: losses, metrics, optimiser and schedules, EMA, stage two, checkpoints, the loop."""

from jaxtl.train.checkpoint import Checkpointer, load_model_config, load_model_variables, save_model
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig
from jaxtl.train.ema import EMAState, ema_init, ema_update
from jaxtl.train.loop import NonFiniteLossError, TrainResult, evaluate, shuffled, train
from jaxtl.train.loss import LOSSES, LossConfig, combine, compute_loss, loss_terms, needs_stress
from jaxtl.train.metrics import MetricsAccumulator, graph_errors
from jaxtl.train.optimizer import (
    FROZEN,
    TRAINABLE,
    OptimizerConfig,
    PlateauState,
    make_optimizer,
    plateau_update,
    scheduled_lr,
)
from jaxtl.train.run import ScratchConfig, train_from_scratch
from jaxtl.train.stage_two import StageTwoConfig

__all__ = [
    "Checkpointer",
    "load_model_config",
    "load_model_variables",
    "save_model",
    "TrainConfig",
    "EMAState",
    "ema_init",
    "ema_update",
    "NonFiniteLossError",
    "TrainResult",
    "evaluate",
    "shuffled",
    "train",
    "LOSSES",
    "LossConfig",
    "combine",
    "compute_loss",
    "loss_terms",
    "needs_stress",
    "MetricsAccumulator",
    "graph_errors",
    "FROZEN",
    "TRAINABLE",
    "OptimizerConfig",
    "PlateauState",
    "make_optimizer",
    "plateau_update",
    "scheduled_lr",
    "StageTwoConfig",
    "DataConfig",
    "ScratchConfig",
    "train_from_scratch",
]
