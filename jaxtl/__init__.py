"""jaxtl: frozen transfer learning and distillation of MACE foundation models in JAX.

The public face: `load_model`, `MACECalculator`, `MACEConfig`, `MACE`. Importing
jaxtl never imports torch (only `jaxtl.convert` does, lazily).
"""

__version__ = "0.1.0"

from jaxtl import _xla_flags

_xla_flags.apply()  # before anything below imports and initialises JAX

from jaxtl.model import MACE, MACEConfig, make_predict  # noqa: E402
from jaxtl.api import LoadedModel, load_model  # noqa: E402


def __getattr__(name):
    if name == "MACECalculator":  # ASE is imported only when the calculator is asked for
        from jaxtl.calculator import MACECalculator

        return MACECalculator
    raise AttributeError(f"module 'jaxtl' has no attribute {name!r}")


__all__ = ["MACE", "MACEConfig", "make_predict", "LoadedModel", "load_model", "MACECalculator"]
