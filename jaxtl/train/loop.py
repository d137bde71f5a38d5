"""The training loop: epochs of jitted steps, validation, checkpoints, logs, resume.

Everything impure lives here (progress bar, files, host-side schedules); the
numerics are in `step.py`. Data come from callables so that data order is a
pure function of (seed, epoch) and a resumed run sees the same batches:

    train(predict_fn, variables, train_batches=lambda epoch: [...Batch...],
          valid_batches=[...], cfg=TrainConfig(), out_dir="runs/x")

Outputs in `out_dir`: train_config.json/.yaml, metrics.jsonl (one record per
epoch), train.log (the epoch lines, see `progress`), checkpoints/{latest,best,
best_stage_two}, model/ (final variables, from the best checkpoint, EMA weights
when on), final_metrics.json and learning_curve.png (redrawn as the run goes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxtl.train.checkpoint import BEST, BEST_STAGE_TWO, LATEST, Checkpointer, pack_state, save_model, unpack_state
from jaxtl.train.config import TrainConfig
from jaxtl.train.distributed import is_primary, primary_decides
from jaxtl.train.ema import ema_init
from jaxtl.train.metrics import MetricsAccumulator
from jaxtl.train.optimizer import PlateauState, make_optimizer, plateau_update, scheduled_lr
from jaxtl.train.parallel import group_batches, make_mesh, replicate
from jaxtl.train.plot import plot_learning_curve, read_log
from jaxtl.train.progress import RunMonitor, ScalarWriter, default_writers, running_errors
from jaxtl.train.stage_two import loss_weights, start_epoch
from jaxtl.train.step import TrainState, make_eval_step, make_train_step

log = logging.getLogger("jaxtl.train")
Batches = Callable[[int], Iterable] | Sequence


class NonFiniteLossError(FloatingPointError):
    """A NaN/inf loss stopped the run; the checkpoints hold the last completed epoch."""


@dataclasses.dataclass
class TrainResult:
    """variables: final {"params", "constants"} (best checkpoint, EMA when on);
    history: per-epoch records; metrics: {split: {group: metrics}};
    n_compiles: Counter of traced compilations {"train", "eval"}."""

    variables: dict
    history: list[dict]
    metrics: dict
    n_compiles: dict
    out_dir: Path


def _items(batches: Batches | None, epoch: int):
    if batches is None:
        return []
    return batches(epoch) if callable(batches) else batches


def _np_dtype(cfg: TrainConfig):
    if cfg.dtype == "float64":
        if not jax.config.jax_enable_x64:
            raise ValueError('dtype "float64" needs jax.config.update("jax_enable_x64", True) at start-up')
        return np.float64
    return np.float32


def _cast(tree, dtype):
    return jax.tree.map(
        lambda x: jnp.asarray(x, dtype) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else jnp.asarray(x), tree
    )


def _host_terms(acc: dict, terms) -> dict:
    for k, (s, c) in terms.items():
        s0, c0 = acc.get(k, (0.0, 0.0))
        acc[k] = (s0 + float(s), c0 + float(c))
    return acc


def _host_loss(terms: dict, weights: dict) -> float:
    return float(sum(weights[k] * s / max(c, 1.0) for k, (s, c) in terms.items()))


def _run_eval(
    eval_step,
    params,
    constants,
    items,
    mesh,
    dtype,
    weights,
    acc: MetricsAccumulator | None = None,
    prefetch: int = 0,
) -> tuple[float, dict]:
    """Exact loss and metrics of `items` ({group: metrics}); the errors are also added to `acc`.
    `prefetch` steps are read and padded ahead on a background thread (the result is the same)."""
    terms: dict = {}
    acc = MetricsAccumulator() if acc is None else acc
    # closed on any exception too, so the reading thread stops with the evaluation
    with contextlib.closing(group_batches(items, mesh, dtype, prefetch)) as steps:
        for _, stacked, types in steps:
            t, errors = eval_step(params, constants, stacked)
            _host_terms(terms, t)
            errors = jax.tree.map(np.asarray, errors)
            for j, ctypes in enumerate(types):
                acc.update({k: v[j] for k, v in errors.items()}, ctypes)
    loss = _host_loss(terms, weights) if terms else math.nan
    return loss, acc.result()


def improves(loss: float, reference: float, min_rel_improvement: float) -> bool:
    """Whether `loss` resets the patience counter: it is below `reference` (the loss of the
    last epoch that did) by more than the fraction `min_rel_improvement` of it."""
    return loss < reference * (1.0 - min_rel_improvement) if math.isfinite(reference) else loss < reference


def _fresh_meta(cfg: TrainConfig) -> dict:
    return {
        "epoch": 0,
        "step": 0,
        "seed": cfg.seed,
        "plateau": dataclasses.asdict(PlateauState()),
        "best_loss": math.inf,
        "patience_ref": math.inf,
        "best_epoch": None,
        "epochs_since_best": 0,
        "stage": 1,
        "stage_two_start": start_epoch(cfg.stage_two, cfg.max_num_epochs),
    }


def evaluate(predict_fn, variables: dict, batches: Iterable, cfg: TrainConfig) -> tuple[float, dict]:
    """(loss, {group: metrics}) of `variables` on `batches` with `cfg`'s stage-one loss."""
    return make_evaluator(predict_fn, cfg)(variables, batches)


def make_evaluator(predict_fn, cfg: TrainConfig) -> Callable:
    """`evaluator(variables, batches, acc=None) -> (loss, {group: metrics})`: `evaluate`
    with one compiled step for many calls, on the data mesh of `cfg.n_devices` (every
    process of a multi-process job calls it with the same batches and reads only its
    own); each call's errors are also added to `acc` (a `MetricsAccumulator`)."""
    dtype = _np_dtype(cfg)
    mesh = make_mesh(cfg.n_devices)
    eval_step, _ = make_eval_step(predict_fn, cfg.loss.loss, cfg.loss.huber_delta, cfg.wants_stress, mesh)

    def evaluator(variables: dict, batches: Iterable, acc: MetricsAccumulator | None = None):
        v = _cast(variables, dtype)
        constants = v.get("constants", {})
        return _run_eval(eval_step, v["params"], constants, batches, mesh, dtype, cfg.loss.weights(), acc, cfg.prefetch)

    return evaluator


def train(
    predict_fn: Callable,
    variables: dict,
    train_batches: Callable[[int], Iterable],
    valid_batches: Batches,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    test_batches: Batches | None = None,
    param_labels: Any = None,
    label_transforms: dict | None = None,
    decay_filter: Callable | None = None,
    resume: bool = False,
    model_config: dict | None = None,
    write_model: Callable[[Path, dict], Any] | None = None,
    writers: Sequence[ScalarWriter] | None = None,
) -> TrainResult:
    """Train `variables["params"]` of `predict_fn` (constants stay fixed).

    Args:
        predict_fn: `predict(variables, graph, compute_stress) -> dict` (energy,
            forces, stress, virials ...), pure.
        variables: {"params": trainable pytree, "constants": fixed pytree}.
        train_batches: epoch -> iterable of Batch (or (Batch, config_types)),
            deterministic in (seed, epoch); see `shuffled`.
        valid_batches, test_batches: sequences (or epoch -> iterable) of the same.
        cfg: training settings.
        out_dir: run folder (must hold no checkpoints unless `resume`).
        param_labels, label_transforms, decay_filter: passed to `make_optimizer`
            (freezing, soft freezing, weight-decay selection).
        resume: continue from `out_dir/checkpoints/latest` exactly.
        model_config: JSON-able model configuration saved with the final model.
        write_model: `write_model(out_dir / "model", variables)` writes the final
            model instead of the plain `save_model` (fine-tuning uses it to merge
            adapters and add its metadata first, so the folder is written once).
        writers: where each epoch's scalars also go (`progress.ScalarWriter`: TensorBoard,
            W&B); default `progress.default_writers()`.

    Raises:
        NonFiniteLossError: a training or validation loss is NaN/inf; the
            message names the epoch and batch; no checkpoint is written for it.
    """
    run = _open_run(Path(out_dir), cfg, resume)
    optimizer = make_optimizer(cfg.optimizer, param_labels, label_transforms, decay_filter)
    run = _with_steps(run, predict_fn, optimizer)
    state, constants, meta = _initial_state(_cast(variables, run.dtype), optimizer, run, resume)

    monitor = RunMonitor(run.out, cfg.max_num_epochs, default_writers() if writers is None else writers, cfg.plot)
    saver = _Saver(run)
    try:
        monitor.start()
        first = cfg.max_num_epochs if meta.get("stopped") else meta["epoch"]  # early-stopped: just finish
        for epoch in range(first, cfg.max_num_epochs):
            state, record, improved = _epoch(run, state, constants, meta, epoch, train_batches, valid_batches)
            monitor.epoch(record)  # adds wall_s and eta_s
            _append(run.log_path, record)
            saver.epoch_done(state, constants, meta, epoch, improved)
            if meta["stopped"]:
                break
        saver.flush()
        splits = {"train": train_batches, "valid": valid_batches, "test": test_batches}
        return _finish(run, state, constants, splits, model_config, write_model)
    except BaseException:
        saver.flush_after_error()  # the last completed epoch is kept
        raise
    finally:
        monitor.stop()
        run.ckpt.close()


@dataclasses.dataclass(frozen=True)
class _Run:
    """What stays fixed through one training run: its settings, folder, device mesh,
    checkpoints, log, compiled steps and the count of their compilations."""

    cfg: TrainConfig
    out: Path
    dtype: Any
    mesh: Any
    ckpt: Checkpointer
    log_path: Path
    compiles: Counter
    train_step: Callable | None = None
    eval_step: Callable | None = None


def _open_run(out: Path, cfg: TrainConfig, resume: bool) -> _Run:
    """The run folder made (refused when it holds checkpoints and not `resume`), its config
    saved; the steps are added by `_with_steps`."""
    out.mkdir(parents=True, exist_ok=True)
    dtype = _np_dtype(cfg)
    ckpt = Checkpointer(out)
    if not resume and ckpt.latest_step(LATEST) is not None:
        raise FileExistsError(f"{out} already holds checkpoints: pass resume=True or use a new out_dir")
    if is_primary():  # in a multi-process job, process 0 writes the logs and files
        cfg.save(out / "train_config.json")
        cfg.save(out / "train_config.yaml")
    return _Run(cfg, out, dtype, make_mesh(cfg.n_devices), ckpt, out / "metrics.jsonl", Counter())


def _with_steps(run: _Run, predict_fn: Callable, optimizer) -> _Run:
    """`run` with its jitted training and evaluation steps (compilations counted in `run.compiles`)."""
    cfg = run.cfg
    loss, delta, stress = cfg.loss.loss, cfg.loss.huber_delta, cfg.wants_stress
    ema_decay = cfg.ema_decay if cfg.ema else None
    train_step, _ = make_train_step(predict_fn, loss, delta, stress, optimizer, ema_decay, run.mesh, run.compiles)
    eval_step, _ = make_eval_step(predict_fn, loss, delta, stress, run.mesh, run.compiles)
    return dataclasses.replace(run, train_step=train_step, eval_step=eval_step)


def _epoch(
    run: _Run, state: TrainState, constants, meta: dict, epoch: int, train_batches, valid_batches
) -> tuple[TrainState, dict, bool]:
    """Train one epoch and validate: (state, the epoch's log record, improved: a new best
    validation loss). `meta` is brought up to date (stage, plateau, patience, stopped)."""
    cfg = run.cfg
    t0 = time.time()
    stage_two = meta["stage_two_start"] is not None and epoch >= meta["stage_two_start"]
    if stage_two and meta["stage"] == 1:
        log.info("epoch %d: stage two (loss weights and lr %g)", epoch, cfg.stage_two.swa_lr)
        meta.update(stage=2, best_loss=math.inf, patience_ref=math.inf, best_epoch=None, epochs_since_best=0)
    weights = loss_weights(cfg.loss, cfg.stage_two, stage_two)
    plateau = PlateauState(**meta["plateau"])
    items = _items(train_batches, epoch)
    state, terms, lr = _train_epoch(run, state, constants, items, epoch, stage_two, plateau, weights)
    train_loss = _host_loss(terms, weights)
    valid_loss, valid_metrics = _validate(
        run, state, constants, _items(valid_batches, epoch), epoch, weights, train_loss
    )
    if not stage_two and cfg.optimizer.scheduler == "plateau":
        meta["plateau"] = dataclasses.asdict(plateau_update(plateau, valid_loss, cfg.optimizer))
    improved, stop = _early_stopping(meta, valid_loss, epoch, cfg)
    meta.update(epoch=epoch + 1, step=int(state.step), stopped=stop)
    record = {
        "epoch": epoch,
        "stage": meta["stage"],
        "lr": lr,
        "train_loss": train_loss,
        "train_running": running_errors(terms, cfg.loss.loss),
        "valid_loss": valid_loss,
        "valid": valid_metrics,
        "time_s": time.time() - t0,
        "n_compiles": dict(run.compiles),
    }
    return state, record, improved


def _validate(
    run: _Run, state: TrainState, constants, items, epoch: int, weights: dict, train_loss: float
) -> tuple[float, dict]:
    """(loss, {group: metrics}) of the epoch's validation batches, with the EMA weights when
    on; without validation data the loss is `train_loss`, so patience and plateau follow it.

    Raises NonFiniteLossError (logged) when that loss is NaN/inf."""
    params = state.ema.params if state.ema is not None else state.params
    loss, metrics = _run_eval(
        run.eval_step, params, constants, items, run.mesh, run.dtype, weights, prefetch=run.cfg.prefetch
    )
    if math.isnan(loss) and not metrics:
        loss = train_loss
    if not math.isfinite(loss):
        msg = f"non-finite validation loss ({loss}) after epoch {epoch}; stopping"
        _append(run.log_path, {"event": "non_finite_loss", "epoch_failed": epoch, "message": msg})
        raise NonFiniteLossError(f"{msg}. {_last_good(run)}")
    return loss, metrics


def _last_good(run: _Run) -> str:
    """Where the run's last completed epoch is kept, for an error message (the checkpoints
    of an epoch still held in memory are written on the way out, `_Saver.flush_after_error`)."""
    if run.ckpt.latest_step(LATEST) is None:
        return "Last good checkpoint: none (no epoch completed)"
    return f"Last good checkpoint: the latest in {run.ckpt.root / LATEST} (the last completed epoch)"


class _Saver:
    """The run's checkpoints: after each epoch the latest state (and the best of the current
    stage when it improved) is held, and written when `cfg.checkpoint_interval_s` has passed
    since the last write, on the first epoch, and at the end (`flush`). The best ones are
    written before the latest, so a latest checkpoint on disk always has its best beside it.
    In a multi-process job process 0's clock decides for all (saving is collective)."""

    def __init__(self, run: _Run):
        self.run = run
        self.last_write = -math.inf
        self.pending: dict[str, tuple[int, dict, dict]] = {}  # name -> (step, arrays, meta)

    def epoch_done(self, state: TrainState, constants, meta: dict, epoch: int, improved: bool) -> None:
        arrays, snapshot = pack_state(state, constants), copy.deepcopy(meta)
        if improved:
            self.pending[BEST_STAGE_TWO if meta["stage"] == 2 else BEST] = (epoch + 1, arrays, snapshot)
        self.pending[LATEST] = (epoch + 1, arrays, snapshot)
        last = meta["stopped"] or epoch + 1 >= self.run.cfg.max_num_epochs
        due = time.monotonic() - self.last_write >= self.run.cfg.checkpoint_interval_s
        if primary_decides(last or due):
            self.flush()

    def flush(self) -> None:
        """Write what is held, best first; an entry leaves `pending` only once written, so
        a failed best write stops the latest from being written without it."""
        for name in (BEST, BEST_STAGE_TWO, LATEST):
            if name not in self.pending:
                continue
            step, arrays, meta = self.pending[name]
            if name == LATEST or self.run.ckpt.latest_step(name) != step:  # a resumed rerun of a saved epoch
                self.run.ckpt.save(name, step, arrays, meta)
            del self.pending[name]
        self.last_write = time.monotonic()

    def flush_after_error(self) -> None:
        """`flush` on the way out of an error, logging (not raising) its own failure; in a
        multi-process job nothing is written (the other processes may not be here)."""
        if jax.process_count() > 1 or not self.pending:
            return
        try:
            self.flush()
        except Exception as err:  # the error being raised matters more
            log.warning("could not write the last checkpoints: %s", err)


def _initial_state(variables: dict, optimizer, run: _Run, resume: bool) -> tuple[TrainState, dict, dict]:
    """(state, constants, meta) of a fresh run, or of the latest checkpoint when resuming
    (the log then cut back to its epoch)."""
    cfg, ckpt, log_path = run.cfg, run.ckpt, run.log_path
    constants = variables.get("constants", {})
    params = variables["params"]
    state = TrainState(jnp.zeros([], jnp.int32), params, optimizer.init(params), ema_init(params) if cfg.ema else None)
    meta = _fresh_meta(cfg)
    # Replicated on the mesh from the start, as the step returns it (one compilation); the
    # restored checkpoint takes this placement from its template.
    state, constants = replicate((state, constants), run.mesh)
    primary = is_primary()
    if resume and ckpt.latest_step(LATEST) is not None:
        arrays, meta = ckpt.restore(LATEST, template=pack_state(state, constants))
        state, constants = unpack_state(arrays, state)
        if meta["seed"] != cfg.seed:
            raise ValueError(f"resuming a run of seed {meta['seed']} with seed {cfg.seed}")
        kept = [r for r in read_log(log_path) if r.get("epoch", -1) < meta["epoch"]]
        if primary:
            log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if meta["stage"] == 1:
            # a run resumed with a new length (or stage-two setting) gets the new start;
            # an unchanged config gives the same value, so exact resume is unaffected
            new_start = start_epoch(cfg.stage_two, cfg.max_num_epochs)
            if new_start != meta["stage_two_start"]:
                log.info("stage two now starts at epoch %s (was %s)", new_start, meta["stage_two_start"])
                meta["stage_two_start"] = new_start
        log.info("resumed %s at epoch %d (step %d)", log_path.parent, meta["epoch"], meta["step"])
    elif primary:
        log_path.write_text("")
    return state, constants, meta


def _train_epoch(
    run: _Run,
    state: TrainState,
    constants,
    items,
    epoch: int,
    stage_two: bool,
    plateau: PlateauState,
    weights: dict,
) -> tuple[TrainState, dict, float]:
    """One pass over the epoch's batches: (state, summed loss terms, last lr).

    Raises NonFiniteLossError (logged, naming epoch and batch) on a non-finite step loss."""
    cfg, mesh, dtype = run.cfg, run.mesh, run.dtype
    weights_dev = {k: jnp.asarray(v, dtype) for k, v in weights.items()}
    total = math.ceil(len(items) / cfg.n_devices) if hasattr(items, "__len__") else None
    bar = tqdm(
        total=total, desc=f"epoch {epoch}", disable=None if cfg.progress_bar and is_primary() else True, leave=False
    )  # None: only on a terminal
    terms: dict = {}
    lr = math.nan
    # closed on any exception too, so the reading thread stops with the epoch
    with contextlib.closing(group_batches(items, mesh, dtype, cfg.prefetch)) as steps:
        for idx, stacked, _ in steps:
            step = int(state.step)
            lr = cfg.stage_two.swa_lr if stage_two else scheduled_lr(cfg.optimizer, step, epoch, plateau)
            state, stats = run.train_step(state, constants, stacked, jnp.asarray(lr, dtype), weights_dev)
            value = float(stats["loss"])
            if not math.isfinite(value):
                where = f"batch {idx[0]}" if len(idx) == 1 else f"batches {', '.join(map(str, idx))}"
                msg = f"non-finite training loss ({value}) at epoch {epoch}, {where}; stopping. {_last_good(run)}"
                _append(
                    run.log_path, {"event": "non_finite_loss", "epoch_failed": epoch, "batch": idx[0], "message": msg}
                )
                raise NonFiniteLossError(msg)
            _host_terms(terms, stats["terms"])
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}", lr=f"{lr:.2e}")
    bar.close()
    return state, terms, lr


def _early_stopping(meta: dict, valid_loss: float, epoch: int, cfg: TrainConfig) -> tuple[bool, bool]:
    """(improved: a new best validation loss, stop: patience ran out) after `epoch`; updates
    meta's best loss, patience reference and counter, and starts stage two early when
    patience runs out in stage one."""
    improved = valid_loss < meta["best_loss"]
    reference = meta.get("patience_ref", meta["best_loss"])
    if improved:
        meta.update(best_loss=valid_loss, best_epoch=epoch)
    if improves(valid_loss, reference, cfg.min_rel_improvement):
        meta.update(patience_ref=valid_loss, epochs_since_best=0)
    else:
        meta["epochs_since_best"] += 1
    stop = False
    if meta["epochs_since_best"] >= cfg.patience:
        if cfg.stage_two.enabled and meta["stage"] == 1:
            log.info("no improvement for %d epochs: starting stage two", cfg.patience)
            meta["stage_two_start"] = epoch + 1
        else:
            log.info("no improvement for %d epochs: stopping", cfg.patience)
            stop = True
    return improved, stop


def _append(path: Path, record: dict) -> None:
    if not is_primary():
        return
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _finish(
    run: _Run, state: TrainState, constants, splits: dict, model_config: dict | None, write_model=None
) -> TrainResult:
    """Final model from the best checkpoint of the last stage; metrics on every split
    (`splits`: {"train", "valid", "test"} -> batches, None for a split left out)."""
    ckpt, cfg, out = run.ckpt, run.cfg, run.out
    template = pack_state(state, constants)
    template_sharding = jax.tree.map(lambda x: x.sharding, (state, constants))
    for name in (BEST_STAGE_TWO, BEST, LATEST):
        if ckpt.latest_step(name) is not None:
            arrays, _ = ckpt.restore(name, template=template)
            state, constants = jax.device_put(unpack_state(arrays, state), template_sharding)
            break
    params = state.ema.params if state.ema is not None else state.params
    weights = cfg.loss.weights()
    metrics = {}
    for split, batches in splits.items():
        items = _items(batches, 0)
        if batches is not None:
            loss, m = _run_eval(
                run.eval_step, params, constants, items, run.mesh, run.dtype, weights, prefetch=run.cfg.prefetch
            )
            metrics[split] = {"loss": loss, **m}
    if is_primary():
        (out / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    variables = {"params": params, "constants": constants}
    if write_model is None:
        save_model(out / "model", model_config or {}, variables)
    else:
        write_model(out / "model", variables)
    if cfg.plot and is_primary():
        plot_learning_curve(run.log_path, out / "learning_curve.png")
    log.info("compilations: %s", dict(run.compiles))
    return TrainResult(variables, read_log(run.log_path), metrics, dict(run.compiles), out)


def shuffled(batches: Sequence, seed: int, shuffle: bool = True) -> Callable[[int], list]:
    """epoch -> the batches in an order fixed by (seed, epoch)."""

    def at(epoch: int) -> list:
        if not shuffle:
            return list(batches)
        order = np.random.default_rng([seed, epoch]).permutation(len(batches))
        return [batches[i] for i in order]

    return at
