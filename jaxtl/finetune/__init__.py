"""Frozen transfer learning: label functions (freezing), gradient cutting, E0 refits, `finetune`.

    from jaxtl.finetune import freeze_labels, describe, finetune
    labels = freeze_labels(params, 6)            # mace-torch --freeze 6: only readouts train
    print(describe(params, labels))              # the dry run
    config = FinetuneConfig(FoundationConfig("foundation.model"), DataConfig("data.xyz"),
                            StrategyConfig(freeze=6), TrainConfig(max_num_epochs=50))
    finetune(config, "runs/f6")
    finetune(config.replace(strategy=StrategyConfig("replay+lora", lora_rank=4)), "runs/lora")

`DataConfig` is `jaxtl.train.data.DataConfig`, `TrainConfig` is `jaxtl.train.TrainConfig`.
"""

from jaxtl.finetune.config import FinetuneConfig, FoundationConfig, StrategyConfig
from jaxtl.finetune.e0s import RankDeficientWarning, element_counts, fit_e0s, lstsq_e0s

# Binds the name to the function (importing the submodule of the same name set it to the module).
from jaxtl.finetune.finetune import FinetuneResult, finetune, load_foundation, resolve_labels  # noqa: E402
from jaxtl.finetune.freeze import (
    FROZEN,
    GROUPS,
    LR_FACTOR_KEYS,
    TRAINABLE,
    freeze_labels,
    frozen_groups,
    group_labels,
    group_of,
    label_transforms,
    layer_labels,
    layer_of,
    lr_factor_transforms,
    paper_children,
    path_str,
    pattern_labels,
    soft,
    soft_factor,
    soft_labels,
)
from jaxtl.finetune.gradients import (
    merge_params,
    split_params,
    step_time_saving,
    stop_frozen,
    stop_frozen_gradients,
    trainable_value_and_grad,
)
from jaxtl.finetune.lora import LoRA
from jaxtl.finetune.magnitude import Magnitude
from jaxtl.finetune.replay import Replay, pseudolabel, rattled_copies, replay_structures
from jaxtl.finetune.report import FreezeReport, describe
from jaxtl.finetune.strategies import STRATEGIES, Strategy, StrategyReport, describe_strategy, make_strategy

__all__ = [
    "RankDeficientWarning",
    "element_counts",
    "fit_e0s",
    "lstsq_e0s",
    "FROZEN",
    "GROUPS",
    "LR_FACTOR_KEYS",
    "TRAINABLE",
    "freeze_labels",
    "frozen_groups",
    "group_labels",
    "group_of",
    "label_transforms",
    "layer_labels",
    "layer_of",
    "lr_factor_transforms",
    "paper_children",
    "path_str",
    "pattern_labels",
    "soft",
    "soft_factor",
    "soft_labels",
    "merge_params",
    "split_params",
    "step_time_saving",
    "stop_frozen",
    "stop_frozen_gradients",
    "trainable_value_and_grad",
    "FreezeReport",
    "describe",
    "finetune",
    "FinetuneResult",
    "resolve_labels",
    "load_foundation",
    "LoRA",
    "Magnitude",
    "Replay",
    "pseudolabel",
    "rattled_copies",
    "replay_structures",
    "STRATEGIES",
    "Strategy",
    "StrategyReport",
    "describe_strategy",
    "make_strategy",
    "FinetuneConfig",
    "FoundationConfig",
    "StrategyConfig",
]
