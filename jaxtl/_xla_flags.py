"""XLA CPU settings `jaxtl.configure_cpu` applies before JAX starts (measured, see benchmarks/README.md).

XLA's CPU backend routes some fused dots and reductions to YNNPACK. For MACE's
per-edge tensor products (many tiny contractions over 10^4 edges) those fusions
are slow: on a 2-core CPU a 32x0e Si model's energy+forces went from 185 ms to
75 ms, and a training step from 434 ms to 194 ms, with them disabled. Set
JAXTL_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched. It only takes effect before
JAX initialises its CPU backend.
"""

import os
from importlib import metadata

_FLAG = "--xla_cpu_experimental_ynn_fusion_type="
# XLA stops at an unknown flag; this one is known to exist from the jaxlib measured here
FLAG_SINCE = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return ()


def apply() -> str:
    """Add the flag to XLA_FLAGS unless the user set it, JAXTL_KEEP_XLA_FLAGS is set, or the
    jaxlib is older than `FLAG_SINCE`; returns the flag added, "" if none."""
    if os.environ.get("JAXTL_KEEP_XLA_FLAGS"):
        return ""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" in flags or _jaxlib_version() < FLAG_SINCE:
        return ""
    os.environ["XLA_FLAGS"] = (flags + " " + _FLAG).strip()
    return _FLAG


def enable_compilation_cache(path: str | None = None) -> None:
    """Keep compiled XLA programs on disk (`~/.cache/jaxtl/xla`, or $JAXTL_CACHE/xla).

    A second run of the same model and shapes then starts in seconds instead of
    re-compiling. Used by the `jaxtl` command and the tests; JAXTL_NO_COMPILATION_CACHE=1
    turns it off.
    """
    if os.environ.get("JAXTL_NO_COMPILATION_CACHE"):
        return
    import jax

    root = path or os.path.join(os.environ.get("JAXTL_CACHE", os.path.expanduser("~/.cache/jaxtl")), "xla")
    jax.config.update("jax_compilation_cache_dir", root)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
