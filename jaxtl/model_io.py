"""Saving and loading a model folder: `config.json` + Orbax arrays.

Layout of a model folder (what `convert_mace.py` and `jaxtl train` write):

    OUT/config.json       MACEConfig (architecture)
    OUT/variables/        Orbax checkpoint of {"params": ..., "constants": ...}
    OUT/metadata.json     provenance (source file, conversion errors, training run)

Writes go to a temporary sibling folder that is renamed into place at the end,
so an interrupted save never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxtl.model.config import MACEConfig


class ModelFileError(ValueError):
    """A model folder that is missing, incomplete or of an unsupported kind."""


def _checkpointer():
    """Orbax checkpointer of a model folder: host arrays, read or written by this process alone
    (in a multi-process job too, where Orbax would otherwise wait for every process)."""
    import orbax.checkpoint as ocp

    if jax.process_count() == 1:
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    return ocp.StandardCheckpointer(
        multiprocessing_options=ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    )


def save_model(out_dir: str | Path, config: MACEConfig | dict, variables: dict, metadata: dict | None = None) -> Path:
    """Write a model folder atomically; an existing folder is replaced.

    `config` is a MACEConfig, or any JSON-able dict (models other than MACE). In a
    multi-process job every process calls this with the same (replicated) variables;
    process 0 writes the folder and the others wait for it.
    """
    out_dir = Path(out_dir).absolute()
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        if jax.process_index() == 0:
            _write_model(out_dir, config, variables, metadata)
        multihost_utils.sync_global_devices(f"jaxtl model folder {out_dir}")
        return out_dir
    return _write_model(out_dir, config, variables, metadata)


def _write_model(out_dir: Path, config, variables: dict, metadata: dict | None) -> Path:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        config_dict = config.to_dict() if isinstance(config, MACEConfig) else dict(config)
        (tmp / "config.json").write_text(json.dumps(config_dict, indent=2))
        arrays = jax.tree_util.tree_map(np.asarray, variables)
        ckptr = _checkpointer()
        ckptr.save(tmp / "variables", arrays)
        ckptr.wait_until_finished()
        (tmp / "metadata.json").write_text(json.dumps(metadata or {}, indent=2, default=str))
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def load_model_files(path: str | Path) -> tuple[MACEConfig, dict, dict]:
    """Read (config, variables, metadata) from a model folder (numpy leaves)."""
    path = Path(path)
    if path.is_file():
        raise ModelFileError(
            f"{path} is a file; jaxtl models are folders (config.json + variables/). "
            "Convert a mace-torch .model file with `python converters/convert_mace.py IN.model OUT_DIR`."
        )
    if not (path / "config.json").exists() or not (path / "variables").exists():
        raise ModelFileError(f"{path} is not a jaxtl model folder (expected config.json and variables/)")
    try:
        config = MACEConfig.load(path / "config.json")
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path / 'config.json'}: {err}") from err
    variables = _checkpointer().restore((path / "variables").absolute())
    variables = jax.tree_util.tree_map(np.asarray, variables)
    meta_file = path / "metadata.json"
    metadata = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return config, variables, metadata


def cast_variables(variables: Any, dtype: str) -> Any:
    """Cast floating leaves to `dtype` (integers untouched)."""

    def cast(x):
        x = np.asarray(x)
        return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x

    return jax.tree_util.tree_map(cast, variables)
