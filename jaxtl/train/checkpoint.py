"""Orbax checkpoints of a training run, and the final model folder.

Training checkpoints live under `OUT/checkpoints/<name>/<epoch>/` with
`name` in {"latest", "best", "best_stage_two"}; each keeps only its newest
entry. A checkpoint holds the arrays (params, constants, optimiser state, EMA,
step) and a JSON `meta` dict (epoch, scheduler state, best losses, seed, ...),
which is all `resume` needs. In a multi-process job every process calls `save`
and `restore` with the same arguments and Orbax coordinates them (each array
written once, the folder committed by process 0; the run folder must be on a
file system all processes share). Saves are synchronous and atomic: Orbax writes into
a temporary folder and renames it when complete, and only then deletes the
previous entry, so a process killed mid-save leaves the previous checkpoint
intact (leftover temporary folders are ignored and cleaned up on the next open).

The model folder (`save_model` / `load_model_variables`) is a `config.json`
plus an Orbax tree of `{"params": ..., "constants": ...}` in `variables/`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

LATEST = "latest"
BEST = "best"
BEST_STAGE_TWO = "best_stage_two"


def _options() -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(
        max_to_keep=1, enable_async_checkpointing=False, create=True, cleanup_tmp_directories=True
    )


class Checkpointer:
    """The checkpoints of one run, under `out_dir/checkpoints`."""

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir).absolute() / "checkpoints"
        self._managers: dict[str, ocp.CheckpointManager] = {}

    def _manager(self, name: str) -> ocp.CheckpointManager:
        if name not in self._managers:
            # handlers named up front, so that item_metadata can read a checkpoint before any restore
            handlers = {"arrays": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
            self._managers[name] = ocp.CheckpointManager(self.root / name, options=_options(), item_handlers=handlers)
        return self._managers[name]

    def path(self, name: str) -> Path | None:
        """Folder of the newest complete checkpoint `name`, or None."""
        step = self.latest_step(name)
        return None if step is None else self.root / name / str(step)

    def latest_step(self, name: str) -> int | None:
        if not (self.root / name).exists():
            return None
        return self._manager(name).latest_step()

    def save(self, name: str, step: int, arrays: Any, meta: dict) -> None:
        """Save `arrays` (a pytree of arrays) and `meta` (JSON-able) as entry `step`."""
        args = ocp.args.Composite(arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
        self._manager(name).save(step, args=args, force=True)
        self._manager(name).wait_until_finished()

    def restore(self, name: str, template: Any | None = None, step: int | None = None) -> tuple[Any, dict]:
        """(arrays, meta) of entry `step` (default newest).

        `template` fixes the tree, dtypes and placement (a resumed run passes its
        state, replicated on its mesh); without one, the arrays come back whole on this
        process's first device, whatever devices or processes wrote them.
        """
        manager = self._manager(name)
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint {name!r} under {self.root}")
        if template is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            template = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), manager.item_metadata(step)["arrays"]
            )
        arrays_arg = ocp.args.StandardRestore(template)
        out = manager.restore(step, args=ocp.args.Composite(arrays=arrays_arg, meta=ocp.args.JsonRestore()))
        return out["arrays"], out["meta"]

    def close(self) -> None:
        for m in self._managers.values():
            m.close()
        self._managers.clear()


def pack_state(state, constants) -> dict:
    """Checkpoint arrays of a `TrainState`: readable params/constants, other leaves by index."""
    rest = (state.step, state.opt_state, state.ema)
    leaves = jax.tree.leaves(rest)
    return {
        "params": state.params,
        "constants": constants,
        "state": {f"{i:05d}": leaf for i, leaf in enumerate(leaves)},
    }


def unpack_state(arrays: dict, template_state):
    """(TrainState, constants) from `pack_state` output, shaped like `template_state`."""
    rest = (template_state.step, template_state.opt_state, template_state.ema)
    treedef = jax.tree.structure(rest)
    leaves = [arrays["state"][k] for k in sorted(arrays["state"])]
    step, opt_state, ema = jax.tree.unflatten(treedef, leaves)
    return template_state._replace(step=step, params=arrays["params"], opt_state=opt_state, ema=ema), arrays[
        "constants"
    ]


# ---------------------------------------------------------------- model folder


def save_model(directory: str | Path, config: dict, variables: dict) -> Path:
    """Write a model folder: `config.json` and the Orbax tree `variables/` (atomically).

    Args:
        directory: the folder (created; an existing model there is replaced).
        config: JSON-able model configuration.
        variables: {"params": pytree, "constants": pytree} of arrays.
    """
    from jaxtl.model_io import save_model as save_model_folder

    return save_model_folder(directory, config, variables)


def load_model_config(directory: str | Path) -> dict:
    """The `config.json` of a model folder."""
    return json.loads((Path(directory) / "config.json").read_text())


def load_model_variables(directory: str | Path, template: dict | None = None) -> dict:
    """The variables {"params", "constants"} of a model folder (as jax arrays)."""
    checkpointer = ocp.StandardCheckpointer()
    path = Path(directory).absolute() / "variables"
    out = checkpointer.restore(path, template) if template is not None else checkpointer.restore(path)
    checkpointer.close()
    return out
