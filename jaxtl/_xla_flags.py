"""XLA CPU settings jaxtl applies before JAX starts (measured, see benchmarks/README.md).

XLA's CPU backend routes some fused dots and reductions to YNNPACK. For MACE's
per-edge tensor products (many tiny contractions over 10^4 edges) those fusions
are slow: on a 2-core CPU a 32x0e Si model's energy+forces went from 185 ms to
75 ms, and a training step from 434 ms to 194 ms, with them disabled. Set
JAXTL_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched. It only takes effect if
jaxtl is imported before JAX initialises its CPU backend.
"""

import os

_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def apply() -> None:
    if os.environ.get("JAXTL_KEEP_XLA_FLAGS"):
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_experimental_ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + _FLAG).strip()


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
