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
