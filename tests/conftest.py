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

# Compiled XLA programs are cached on disk for the whole test session and its
# subprocesses, so models compiled once are reused: the `jaxtl` command finds the cache
# through JAXTL_CACHE, other children (scripts, notebook kernels, the processes of a
# distributed job) through the JAX_* variables that JAX reads when it is imported.
os.environ.setdefault("JAXTL_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jaxtl-tests"))
import jaxtl  # noqa: E402
from jaxtl import _xla_flags  # noqa: E402

jaxtl.configure_cpu()  # the speed the `jaxtl` command runs at (before JAX starts; inherited XLA_FLAGS too)

_xla_flags.enable_compilation_cache()
import jax  # noqa: E402  (after configure_cpu: XLA_FLAGS first)

if jax.config.jax_compilation_cache_dir:  # not turned off (JAXTL_NO_COMPILATION_CACHE)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", jax.config.jax_compilation_cache_dir)
    os.environ.setdefault(
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", str(jax.config.jax_persistent_cache_min_compile_time_secs)
    )
