"""Settings files for `jaxtl train/finetune --config`: mace-torch YAML and jaxtl's own.

Three forms are read, and may be mixed in one file:

- a mace-torch `run_train` YAML (`train_file`, `max_num_epochs`, `E0s`, `swa`, ...):
  each option jaxtl has is translated to its jaxtl setting (`MACE_NAMES`), the others
  are returned by name as ignored;
- the `run_config.yaml` a jaxtl run writes: jaxtl's own setting names (the
  command-line flags with `_` for `-`), taken as they are;
- the `train_config.yaml` a run writes (`TrainConfig` with its nested `loss`,
  `optimizer` and `stage_two`), flattened to the same settings.

`translate` is pure: it returns (settings, ignored) and the CLI decides what to do.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from typing import Any

# mace-torch option -> jaxtl setting (the argparse dest of the jaxtl flag)
MACE_NAMES = {
    "train_file": "train",
    "valid_file": "valid",
    "test_file": "test",
    "valid_fraction": "valid_fraction",
    "E0s": "e0s",
    "energy_key": "energy_key",
    "forces_key": "forces_key",
    "stress_key": "stress_key",
    "virials_key": "virials_key",
    "head_key": "head_key",
    "config_type_weights": "config_type_weights",
    "batch_size": "batch_size",
    "valid_batch_size": "valid_batch_size",
    "max_num_epochs": "epochs",
    "patience": "patience",
    "lr": "lr",
    "optimizer": "optimizer",
    "weight_decay": "weight_decay",
    "amsgrad": "amsgrad",
    "clip_grad": "clip_grad",
    "beta": "beta1",
    "scheduler": "scheduler",
    "scheduler_patience": "scheduler_patience",
    "lr_factor": "lr_factor",
    "lr_scheduler_gamma": "lr_scheduler_gamma",
    "ema": "ema",
    "ema_decay": "ema_decay",
    "swa": "stage_two",
    "stage_two": "stage_two",
    "start_swa": "start_stage_two",
    "start_stage_two": "start_stage_two",
    "swa_lr": "stage_two_lr",
    "stage_two_lr": "stage_two_lr",
    "swa_energy_weight": "stage_two_energy_weight",
    "stage_two_energy_weight": "stage_two_energy_weight",
    "swa_forces_weight": "stage_two_forces_weight",
    "stage_two_forces_weight": "stage_two_forces_weight",
    "swa_stress_weight": "stage_two_stress_weight",
    "stage_two_stress_weight": "stage_two_stress_weight",
    "swa_virials_weight": "stage_two_virials_weight",
    "stage_two_virials_weight": "stage_two_virials_weight",
    "loss": "loss",
    "energy_weight": "energy_weight",
    "forces_weight": "forces_weight",
    "stress_weight": "stress_weight",
    "virials_weight": "virials_weight",
    "huber_delta": "huber_delta",
    "seed": "seed",
    "default_dtype": "dtype",
    "work_dir": "out",
    "restart_latest": "resume",
    "r_max": "r_max",
    "num_radial_basis": "num_bessel",
    "num_cutoff_basis": "num_cutoff_basis",
    "radial_type": "radial_type",
    "max_ell": "max_ell",
    "correlation": "correlation",
    "num_interactions": "num_interactions",
    "hidden_irreps": "hidden_irreps",
    "MLP_irreps": "mlp_irreps",
    "radial_MLP": "radial_mlp",
    "scaling": "scaling",
    "model": "model_type",
    # fine-tuning
    "foundation_model": "foundation",
    "foundation_head": "head",
    "freeze": "freeze",
    "lr_params_factors": "lr_factors",
    "lora_rank": "lora_rank",
    "lora_alpha": "lora_alpha",
}
# Read with the others, then folded into one jaxtl setting (see `translate`).
_COMBINED = ("num_channels", "max_L", "lora", "enable_cueq")
_SCHEDULERS = {"ReduceLROnPlateau": "plateau", "ExponentialLR": "exponential", "CosineAnnealingLR": "cosine"}
_TRAIN_CONFIG = {  # TrainConfig's nested sections -> flat settings
    "loss": {
        "loss": "loss",
        "energy_weight": "energy_weight",
        "forces_weight": "forces_weight",
        "stress_weight": "stress_weight",
        "virials_weight": "virials_weight",
        "huber_delta": "huber_delta",
    },
    "optimizer": {
        "optimizer": "optimizer",
        "lr": "lr",
        "amsgrad": "amsgrad",
        "beta1": "beta1",
        "beta2": "beta2",
        "eps": "eps",
        "weight_decay": "weight_decay",
        "clip_grad": "clip_grad",
        "scheduler": "scheduler",
        "lr_factor": "lr_factor",
        "scheduler_patience": "scheduler_patience",
        "plateau_threshold": "plateau_threshold",
        "plateau_cooldown": "plateau_cooldown",
        "min_lr": "min_lr",
        "lr_scheduler_gamma": "lr_scheduler_gamma",
        "decay_epochs": "decay_epochs",
        "min_lr_factor": "min_lr_factor",
        "warmup_steps": "warmup_steps",
    },
    "stage_two": {
        "enabled": "stage_two",
        "start_epoch": "start_stage_two",
        "swa_lr": "stage_two_lr",
        "energy_weight": "stage_two_energy_weight",
        "forces_weight": "stage_two_forces_weight",
        "stress_weight": "stage_two_stress_weight",
        "virials_weight": "stage_two_virials_weight",
    },
}
_TRAIN_CONFIG_TOP = {
    "max_num_epochs": "epochs",
    "patience": "patience",
    "seed": "seed",
    "dtype": "dtype",
    "ema": "ema",
    "ema_decay": "ema_decay",
    "backend": "backend",
    "compute_stress": None,
    "n_devices": None,
    "progress_bar": None,
    "plot": None,
}


def hidden_irreps(num_channels: int, max_L: int) -> str:
    """mace-torch's hidden irreps from --num_channels and --max_L: channels x (0e, 1o, 2e, ...)."""
    return " + ".join(f"{int(num_channels)}x{l}{'e' if l % 2 == 0 else 'o'}" for l in range(int(max_L) + 1))


def _literal(value: Any) -> Any:
    """A mace option given as a Python literal string ("[64, 64, 64]") as its value."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def translate(values: Mapping[str, Any], known: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """(jaxtl settings, ignored names) of a settings file's top-level `values`.

    known: the jaxtl settings the command has (its argparse dests); a translated
    setting the command lacks (e.g. `foundation_model` for `jaxtl train`) is ignored.
    """
    known = set(known)
    settings: dict[str, Any] = {}
    ignored: list[str] = []

    def put(source: str, dest: str | None, value: Any) -> None:
        if dest is None:
            return
        if dest in known:
            settings[dest] = value
        else:
            ignored.append(source)

    defaults = _train_config_defaults() if any(k in _TRAIN_CONFIG or k in _TRAIN_CONFIG_TOP for k in values) else {}

    def put_train_config(name: str, dest: str | None, value: Any) -> None:
        """A TrainConfig field: a setting the command has is taken; one it lacks is named
        only when it differs from the default (a default loses nothing)."""
        if dest is not None and dest in known:
            settings[dest] = value
        elif defaults.get(name, object()) != value:
            ignored.append(name)

    for key, value in values.items():
        name = str(key)
        flat = name.replace("-", "_")
        if name == "command":  # the subcommand a run_config.yaml was written by
            continue
        if name in _TRAIN_CONFIG and isinstance(value, Mapping):
            for sub, sub_value in value.items():
                put_train_config(f"{name}.{sub}", _TRAIN_CONFIG[name].get(sub), sub_value)
        elif name in _TRAIN_CONFIG_TOP and flat not in known:
            put_train_config(name, _TRAIN_CONFIG_TOP[name], value)
        elif flat in known and name not in MACE_NAMES:
            settings[flat] = value  # jaxtl's own name (run_config.yaml)
        elif name in MACE_NAMES:
            put(name, MACE_NAMES[name], _mace_value(name, value))
        elif name not in _COMBINED:
            ignored.append(name)

    if "num_channels" in values or "max_L" in values:
        if values.get("num_channels") is not None and values.get("max_L") is not None and "hidden_irreps" not in values:
            put("num_channels/max_L", "hidden_irreps", hidden_irreps(values["num_channels"], values["max_L"]))
        elif "hidden_irreps" not in values:
            ignored.append("num_channels/max_L (both are needed)")
    if (
        _truthy(values.get("swa", values.get("stage_two")))
        and values.get("start_swa", values.get("start_stage_two")) is None
        and "max_num_epochs" in values
        and "start_stage_two" in known
    ):
        # mace-torch starts stage two at max(1, epochs // 4 * 3) when --start_swa is not given
        settings["start_stage_two"] = max(1, int(values["max_num_epochs"]) // 4 * 3)
    if _truthy(values.get("enable_cueq")):
        put("enable_cueq", "backend", "cueq")
    if "lora" in values:
        if _truthy(values["lora"]):
            put("lora", "strategy", "lora")
    return settings, sorted(set(ignored))


def _train_config_defaults() -> dict[str, Any]:
    """{"optimizer.lr": 0.01, "n_devices": 1, ...}: TrainConfig's defaults, flattened."""
    from jaxtl.train.config import TrainConfig

    flat = {}
    for key, value in TrainConfig().to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    return flat


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _mace_value(name: str, value: Any) -> Any:
    """A mace option's value in jaxtl's form."""
    if name == "scheduler":
        return _SCHEDULERS.get(value, value)
    if name == "radial_MLP":
        return [int(v) for v in _literal(value)]
    if name in ("config_type_weights", "lr_params_factors") and isinstance(value, str):
        return _literal(value) if value.strip().startswith("{") else value
    if name in ("swa", "stage_two", "ema", "amsgrad", "restart_latest"):
        return _truthy(value)
    return value
