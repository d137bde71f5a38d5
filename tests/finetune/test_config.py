"""`FinetuneConfig`: composed of the data, strategy and training configs; round trip
through dicts and YAML; errors naming the fields."""

import dataclasses

import pytest

from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig
from jaxtl.graph.io import DataKeys
from jaxtl.train import TrainConfig
from jaxtl.train.data import DataConfig
from jaxtl.train.optimizer import OptimizerConfig


def full_config() -> FinetuneConfig:
    return FinetuneConfig(
        foundation=FoundationConfig("mace-mp-0-medium", head="pbe"),
        data=DataConfig(
            train_file="train.xyz",
            valid_fraction=0.2,
            keys=DataKeys(energy="E"),
            batch_size=4,
            config_type_weights={"bulk": 2.0},
        ),
        strategy=StrategyConfig(
            "replay+lora",
            freeze=6,
            lr_factors={"interactions_lr_factor": 0.1},
            lora_rank=2,
            adapter_patterns=["interactions_*"],
            replay_files=["a.xyz"],
            replay_weight=0.5,
        ),
        train=TrainConfig(max_num_epochs=3, dtype="float64", optimizer=OptimizerConfig(lr=0.002)),
        e0s={1: -13.6, 8: -2042.0},
    )


def test_round_trips_through_dict_and_yaml(tmp_path):
    config = full_config()
    assert FinetuneConfig.from_dict(config.to_dict()) == config
    config.save(tmp_path / "c.yaml")
    again = FinetuneConfig.load(tmp_path / "c.yaml")
    assert again == config and isinstance(again.data.keys, DataKeys)
    assert again.strategy.adapter_patterns == ("interactions_*",) and again.train.optimizer.lr == 0.002
    assert config.differences(again) == []


def test_differences_name_fields_and_allow_a_longer_run_with_moved_files():
    config = full_config()
    moved = config.replace(
        train=config.train.replace(max_num_epochs=9),
        data=dataclasses.replace(config.data, train_file="elsewhere/train.xyz"),
        foundation=FoundationConfig("elsewhere/model", head="pbe"),
    )
    assert config.differences(moved) == []
    other = config.replace(
        strategy=StrategyConfig("lora", lora_rank=3), data=dataclasses.replace(config.data, batch_size=8)
    )
    assert {"strategy.lora_rank", "strategy.name", "data.batch_size"} <= set(config.differences(other))


def test_errors_name_the_fields():
    with pytest.raises(ValueError, match="either freeze or freeze_patterns/train_patterns"):
        StrategyConfig(freeze=5, freeze_patterns=["interactions_0*"])
    with pytest.raises(ValueError, match="StrategyConfig.replay_files is a sequence"):
        StrategyConfig("replay", replay_files="a.xyz")
    with pytest.raises(ValueError, match="StrategyConfig.counting"):
        StrategyConfig(counting="torch")
    with pytest.raises(ValueError, match="FinetuneConfig has no field 'epochs'"):
        FinetuneConfig.from_dict({**full_config().to_dict(), "epochs": 3})
