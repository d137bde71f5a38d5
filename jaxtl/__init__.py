"""jaxtl: frozen transfer learning and distillation of MACE foundation models in JAX."""

__version__ = "0.1.0"
