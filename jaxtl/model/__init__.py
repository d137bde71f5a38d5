"""The Flax MACE: one block a module."""

from jaxtl.model.config import MACEConfig
from jaxtl.model.mace import MACE, init_variables
from jaxtl.model.predict import make_predict

__all__ = ["MACEConfig", "MACE", "init_variables", "make_predict"]
