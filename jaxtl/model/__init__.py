"""The Flax MACE: one block a module."""

from jaxtl import _allocator

_allocator.inline_cpu_dispatch_if_unstarted()  # with jaxtl's heap settings (see `jaxtl._allocator`)

from jaxtl.model.config import MACEConfig
from jaxtl.model.mace import MACE, init_variables
from jaxtl.model.predict import make_predict

__all__ = ["MACEConfig", "MACE", "init_variables", "make_predict"]
