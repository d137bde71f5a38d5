"""Shared pytest setup: make ``tests/`` importable, so test modules can write
``from structures import bulk`` and ``from convert.torch_models import REGISTRY``."""

import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


# The data mirror (jaxtl.datasets): ../shared next to the repository unless $JAXTL_DATA names another.
_MIRROR = os.path.join(os.path.dirname(os.path.dirname(_TESTS)), "shared")
if os.path.isdir(_MIRROR):
    os.environ.setdefault("JAXTL_DATA", _MIRROR)

# Compiled XLA programs are cached on disk for the whole test session (and its
# subprocesses, through the environment), so models compiled once are reused.
os.environ.setdefault("JAXTL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxtl-tests"))
import jaxtl  # noqa: E402
from jaxtl import _xla_flags  # noqa: E402

jaxtl.configure_cpu()  # the speed the `jaxtl` command runs at (before JAX starts; inherited XLA_FLAGS too)

_xla_flags.enable_compilation_cache()
