"""`jaxtl.load_model`: a model folder as a jit-compiled energy/forces/stress function."""

from __future__ import annotations

from pathlib import Path

from jaxtl.foundations import resolve
from jaxtl.loaded import LoadedModel, build_loaded_model, enable_x64_if
from jaxtl.model_io import load_model_files

__all__ = ["LoadedModel", "build_loaded_model", "enable_x64_if", "load_model"]


def load_model(
    path: str | Path, dtype: str | None = None, head: str | None = None, backend: str = "xla"
) -> LoadedModel:
    """Load a jaxtl model folder (written by convert_mace.py or `jaxtl train`), or a
    released foundation model by name ("mace-mp-0-medium", see `jaxtl.foundations`):
    downloaded and converted into the cache ($JAXTL_CACHE, else ~/.cache/jaxtl) once.

    dtype: "float32" or "float64" (default: the dtype it was saved in).
    head: keep only this head of a multi-head model.
    backend: "xla", or "cueq" for NVIDIA cuEquivariance kernels (`jaxtl.model.cueq`).
    """
    if not Path(path).exists():
        path = resolve(path)
    config, variables, metadata = load_model_files(path)
    return build_loaded_model(config, variables, metadata, dtype, head, backend)
