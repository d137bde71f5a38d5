"""jaxtl: frozen transfer learning and distillation of MACE foundation models in JAX.

The public face: `load_model`, `MACECalculator`, `MACEConfig`, `MACE`. Importing
jaxtl never imports torch (only `jaxtl.convert` does, lazily).
"""

__version__ = "0.1.0"

from jaxtl import _allocator, _xla_flags

_xla_flags.apply()  # before anything imports and initialises JAX
_allocator.keep_buffers_in_heap()  # XLA's per-call buffer reused, not faulted in anew (glibc only)

_LAZY = {
    "MACE": "jaxtl.model",
    "MACEConfig": "jaxtl.model",
    "make_predict": "jaxtl.model",
    "LoadedModel": "jaxtl.api",
    "load_model": "jaxtl.api",
    "MACECalculator": "jaxtl.calculator",  # ASE is imported only when the calculator is asked for
    "load_calculator": "jaxtl.calculator",
}


def __getattr__(name):
    """The public names, imported on first use: `import jaxtl` alone does not start JAX,
    so the `jaxtl` command can restart itself (see `_allocator`) before paying for it."""
    import importlib
    import importlib.util

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if not name.startswith("_") and importlib.util.find_spec(f"jaxtl.{name}") is not None:
        return importlib.import_module(f"jaxtl.{name}")  # `jaxtl.model` etc. without an import
    raise AttributeError(f"module 'jaxtl' has no attribute {name!r}")


__all__ = list(_LAZY)
