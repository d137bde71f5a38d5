"""jaxtl: frozen transfer learning and distillation of MACE foundation models in JAX.

The public face: `load_model`, `MACECalculator`, `MACEConfig`, `MACE`; the run
configs (`DataConfig`, `TrainConfig`, `ScratchConfig` for `train_from_scratch`,
`FinetuneConfig` of `FoundationConfig`, `StrategyConfig` for `jaxtl.finetune.finetune`,
`DistillConfig` for `jaxtl.distill.distill`); and
`configure_cpu()`: the process-wide CPU settings (allocator, XLA flags, JAX dispatch)
behind jaxtl's CPU speed, made only when called (see `jaxtl.cpu`). Importing jaxtl
changes nothing outside jaxtl and never imports torch (only `jaxtl.convert` does, lazily).
"""

__version__ = "0.1.0"

_LAZY = {
    "MACE": "jaxtl.model",
    "MACEConfig": "jaxtl.model",
    "make_predict": "jaxtl.model",
    "LoadedModel": "jaxtl.api",
    "load_model": "jaxtl.api",
    "MACECalculator": "jaxtl.calculator",  # ASE is imported only when the calculator is asked for
    "load_calculator": "jaxtl.distill.students",
    "DataConfig": "jaxtl.train",
    "TrainConfig": "jaxtl.train",
    "ScratchConfig": "jaxtl.train",
    "train_from_scratch": "jaxtl.train",
    "FinetuneConfig": "jaxtl.finetune",
    "FoundationConfig": "jaxtl.finetune",
    "StrategyConfig": "jaxtl.finetune",
    "DistillConfig": "jaxtl.distill",
    "configure_cpu": "jaxtl.cpu",
    "cpu_settings": "jaxtl.cpu",
}


def __getattr__(name):
    """The public names, imported on first use: `import jaxtl` alone does not import JAX,
    so `configure_cpu` can still act (and the `jaxtl` command restart) before it starts."""
    import importlib
    import importlib.util

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"jaxtl.{name}") is not None:
        return importlib.import_module(f"jaxtl.{name}")  # `jaxtl.model` etc. without an import
    raise AttributeError(f"module 'jaxtl' has no attribute {name!r}")


__all__ = list(_LAZY)
