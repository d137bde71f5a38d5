"""One cell of a learning-curve grid: (fraction, strategy, seed) trained to convergence and tested.

The cell's folder holds its data (train.xyz: the nested subset, valid.xyz: the seed's
validation set), the training run (run/: checkpoints, metrics.jsonl, model/) and, once
finished, cell.json (written atomically: its presence means the cell is done).
Fine-tuning cells run `jaxtl.finetune.finetune`, scratch cells
`jaxtl.train.run.train_from_scratch` (the foundation's architecture, new weights),
both under the same `TrainConfig` rule: early stopping on the validation loss with
`patience` and `min_rel_improvement`, best-validation (EMA) weights kept, `max_epochs` cap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from jaxtl.config_io import write_text_atomic
from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
from jaxtl.graph.io import DataKeys
from jaxtl.learning_curve.config import SCRATCH, LearningCurveConfig, freeze_level
from jaxtl.train.checkpoint import LATEST, Checkpointer
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig
from jaxtl.train.distributed import barrier, is_primary, per_device_batch_size
from jaxtl.train.loop import improves
from jaxtl.train.loss import LossConfig
from jaxtl.train.optimizer import OptimizerConfig
from jaxtl.train.plot import read_log
from jaxtl.train.run import ScratchConfig, train_from_scratch

log = logging.getLogger("jaxtl.learning_curve")
CELL_FILE = "cell.json"
DEVICES_FILE = "devices.json"


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    """fraction of the pool's training part, strategy name, seed."""

    fraction: float
    strategy: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.fraction:g}_{self.strategy}_s{self.seed}"


def grid_cells(config: LearningCurveConfig) -> list[Cell]:
    """Every cell of the grid, by fraction, strategy and seed."""
    g = config.grid
    return [Cell(f, s, seed) for f in g.fractions for s in g.strategies for seed in range(g.seeds)]


def device_name() -> str:
    """The accelerator the cell runs on, e.g. "cpu" or "gpu: NVIDIA H100 80GB HBM3"."""
    d = jax.devices()[0]
    return d.platform if d.platform == "cpu" else f"{d.platform}: {d.device_kind}"


def train_config(config: LearningCurveConfig, cell: Cell, n_devices: int = 1) -> TrainConfig:
    """The engine settings of `cell`: the grid's convergence rule, the seed, the strategy's lr,
    on a data mesh of `n_devices` (`TrainConfig.n_devices`)."""
    c, t = config.convergence, config.train
    lr = t.scratch_lr if cell.strategy == SCRATCH else t.lr
    return TrainConfig(
        max_num_epochs=c.max_epochs,
        patience=c.patience,
        min_rel_improvement=c.min_rel_improvement,
        seed=cell.seed,
        dtype=t.dtype,
        n_devices=n_devices,
        ema=t.ema,
        ema_decay=t.ema_decay,
        progress_bar=False,
        plot=False,
        loss=LossConfig(energy_weight=t.energy_weight, forces_weight=t.forces_weight),
        optimizer=OptimizerConfig(
            lr=lr, scheduler="plateau", scheduler_patience=c.scheduler_patience, lr_factor=c.lr_factor
        ),
    )


def finished(cell_dir: Path) -> dict | None:
    """The record of a finished cell, or None."""
    path = cell_dir / CELL_FILE
    return json.loads(path.read_text()) if path.exists() else None


def done(record: dict | None, config: LearningCurveConfig) -> bool:
    """Whether a cell's record stands: it exists, and it converged or ran to the current cap
    (a cell capped by a smaller `max_epochs` continues from its checkpoint)."""
    return record is not None and (
        not record["hit_max_epochs"] or record["epochs_run"] >= config.convergence.max_epochs
    )


def run_cell(
    cell: Cell,
    cell_dir: Path,
    config: LearningCurveConfig,
    pool: list,
    subset: np.ndarray,
    valid: np.ndarray,
    foundation_dir: Path,
    scratch_model: dict,
    n_test: int,
    commit: str,
    n_devices: int = 1,
) -> dict:
    """Train and test `cell`; write and return its record.

    pool: the pool's ase.Atoms; subset, valid: [n] pool indices of the training subset
    and validation set. An interrupted run in cell_dir/run resumes exactly; one that
    cannot be resumed restarts (this cell only). n_devices: devices of the data mesh (in a
    multi-process job all devices of all processes; every process calls this, process 0
    writes the files).
    """
    import ase.io

    previous = finished(cell_dir)  # capped by a smaller max_epochs: this run continues it
    if is_primary():
        cell_dir.mkdir(parents=True, exist_ok=True)
        ase.io.write(cell_dir / "train.xyz", [pool[i] for i in subset], format="extxyz")
        ase.io.write(cell_dir / "valid.xyz", [pool[i] for i in valid], format="extxyz")
    barrier(f"{cell.name}: data written")
    run_dir = cell_dir / "run"
    resume = run_dir.exists() and Checkpointer(run_dir).latest_step(LATEST) is not None
    devices = _devices_used(cell_dir, resume)
    args = (cell, cell_dir, run_dir, config, foundation_dir, scratch_model, n_devices)
    t0 = time.perf_counter()
    try:
        metrics, n_trainable = _train(*args, resume)
    except (ValueError, FileNotFoundError) as err:
        if not resume:
            raise
        log.warning("%s: cannot resume (%s); restarting the cell", cell.name, err)
        if is_primary():
            shutil.rmtree(run_dir)
        barrier(f"{cell.name}: restarted")
        resume = False
        devices = _devices_used(cell_dir, resume)
        t0 = time.perf_counter()
        metrics, n_trainable = _train(*args, False)
    wall = time.perf_counter() - t0 + (previous["wall_s"] if previous and resume else 0.0)

    history = [r for r in read_log(run_dir / "metrics.jsonl") if "valid_loss" in r]
    losses = [r["valid_loss"] for r in history]
    best_epoch = int(np.argmin(losses)) if losses else None
    converged = _stopped_early(losses, config.convergence)
    test = metrics["test"]["all"]
    record = {
        **dataclasses.asdict(cell),
        "n_train": len(subset),
        "n_valid": len(valid),
        "n_test": n_test,
        "energy_rmse": test.get("energy_rmse"),
        "forces_rmse": test.get("forces_rmse"),
        "energy_mae": test.get("energy_mae"),
        "forces_mae": test.get("forces_mae"),
        "stress_rmse": test.get("stress_rmse"),
        "epochs_run": len(history),
        "epochs_to_convergence": None if best_epoch is None else best_epoch + 1,
        "hit_max_epochs": not converged,
        "best_valid_loss": None if not losses else float(min(losses)),
        "wall_s": wall,
        "train_s": float(sum(r.get("time_s", 0.0) for r in history)),
        "n_trainable": int(n_trainable),
        "device": " + ".join(devices),
        "n_devices": n_devices,
        "n_processes": jax.process_count(),
        "resumed": resume,
        "jaxtl_commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if is_primary():
        tmp = cell_dir / f".{CELL_FILE}.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, cell_dir / CELL_FILE)
    barrier(f"{cell.name}: finished")
    return record


def _devices_used(cell_dir: Path, resume: bool) -> list[str]:
    """The devices this cell's run has trained on, in order, this one last: a run resumed
    from another machine's checkpoint (a GPU's, say) names both in its record's "device"
    ("gpu: NVIDIA H100 80GB HBM3 + cpu"). Kept in CELL/devices.json, restarted with the run."""
    here = device_name()
    if not is_primary():  # process 0 keeps the list and writes the record
        return [here]
    path = cell_dir / DEVICES_FILE
    try:
        used = json.loads(path.read_text()) if resume else []
    except (FileNotFoundError, ValueError):  # none yet (a run begun before this file existed), or torn
        used = []
    used = [d for d in used if d != here] + [here]
    write_text_atomic(path, json.dumps(used))
    return used


def _stopped_early(losses: list[float], rule) -> bool:
    """Whether the validation losses, epoch by epoch, met `rule`'s patience before its cap."""
    reference, waited = math.inf, 0
    for loss in losses:
        if improves(loss, reference, rule.min_rel_improvement):
            reference, waited = loss, 0
        else:
            waited += 1
        if waited >= rule.patience:
            return True
    return False


def _train(cell, cell_dir, run_dir, config, foundation_dir, scratch_model, n_devices, resume) -> tuple[dict, int]:
    """(final metrics {split: {group: metrics}}, trainable parameters) of one training run;
    the grid's batch size is the global batch of a step, split over the `n_devices`."""
    d, t = config.data, config.train
    keys = DataKeys(energy=d.energy_key, forces=d.forces_key, stress=d.stress_key)
    cfg = train_config(config, cell, n_devices)
    per_device = per_device_batch_size(d.batch_size, n_devices)
    data = DataConfig(
        train_file=str(cell_dir / "train.xyz"),
        valid_file=str(cell_dir / "valid.xyz"),
        test_file=d.test_file,
        keys=keys,
        batch_size=per_device,
        valid_batch_size=per_device,
        seed=cell.seed,
    )
    if cell.strategy == SCRATCH:
        result = train_from_scratch(ScratchConfig(data, scratch_model, cfg, e0s=t.e0s), run_dir, resume=resume)
        return result.metrics, sum(int(np.size(x)) for x in jax.tree.leaves(result.variables["params"]))

    level = freeze_level(cell.strategy)
    lora = level is None and "lora" in cell.strategy.split("+")
    strategy = StrategyConfig(
        name="freeze" if level is not None else cell.strategy,
        freeze=level,
        counting=t.counting,
        lora_rank=t.lora_rank if lora else None,
    )
    ft = FinetuneConfig(FoundationConfig(str(foundation_dir)), data, strategy, cfg, e0s=t.e0s)
    result = finetune(ft, run_dir, resume=resume, log=log.info)
    return result.train.metrics, result.report.n_trainable
