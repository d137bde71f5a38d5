"""Watching a training run: a line per epoch (RMSEs, wall time, ETA) on screen and in
`train.log`, the learning curve redrawn as the run goes, and optional scalar writers
(TensorBoard, Weights & Biases) behind one small interface.

The loop hands `RunMonitor.epoch` the record it appends to `metrics.jsonl`; everything
here is host-side formatting and I/O. Units: energy RMSE in meV/atom, forces meV/A,
stress meV/A^3. "train" errors are the running errors of the epoch's steps (taken from
the loss terms as the weights changed, with config weights applied), which costs nothing;
"valid" errors are exact, from the evaluation after the epoch.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self

log = logging.getLogger("jaxtl.train")

# loss-term name -> (record key, what the term's sum/count is the mean square of)
_SQUARED_TERMS = {"energy": "energy_rmse", "forces": "forces_rmse", "stress": "stress_rmse"}
_SQUARED_LOSSES = ("weighted", "stress", "virials", "forces_only")
PLOT_EVERY = 10  # epochs between redraws of learning_curve.png (a redraw takes ~0.3 s)


class ScalarWriter(Protocol):
    """Where per-epoch scalars go besides the run folder (TensorBoard, W&B, a test's list)."""

    def write(self, step: int, scalars: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class TensorBoardWriter:
    """Scalars as TensorBoard events in `logdir` (pip install jaxtl[tensorboard])."""

    def __init__(self, logdir: str | Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError("TensorBoardWriter needs tensorboardX: pip install jaxtl[tensorboard]") from err
        self._writer = SummaryWriter(str(logdir))

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbWriter:
    """Scalars logged to a Weights & Biases run of `project` (pip install jaxtl[wandb])."""

    def __init__(self, project: str, run_dir: str | Path | None = None, config: Mapping | None = None):
        try:
            import wandb
        except ImportError as err:
            raise ImportError("WandbWriter needs wandb: pip install jaxtl[wandb]") from err
        self._run = wandb.init(
            project=project, dir=None if run_dir is None else str(run_dir), config=dict(config or {})
        )

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self._run.log(dict(scalars), step=step)

    def close(self) -> None:
        self._run.finish()


def running_errors(terms: Mapping[str, tuple[float, float]], loss: str) -> dict[str, float]:
    """RMSEs (meV units) from the squared-error loss terms {name: (sum, count)} of the
    epoch's steps; {} for losses that are not mean squares (huber, universal, l1l2)."""
    if loss not in _SQUARED_LOSSES:
        return {}
    return {
        key: 1000.0 * math.sqrt(terms[name][0] / terms[name][1])
        for name, key in _SQUARED_TERMS.items()
        if name in terms and terms[name][1] > 0
    }


def scalars(record: Mapping) -> dict[str, float]:
    """The numbers of an epoch record, flat ("valid/energy_rmse", ...), for a `ScalarWriter`."""
    out = {"train/loss": record["train_loss"], "valid/loss": record["valid_loss"], "lr": record["lr"]}
    for key, value in record.get("train_running", {}).items():
        out[f"train/{key}"] = value
    for key, value in record.get("valid", {}).get("all", {}).items():
        if key != "n_graphs":
            out[f"valid/{key}"] = value
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def _errors(errors: Mapping[str, float]) -> str:
    parts = [
        f"{label} {errors[key]:.2f}"
        for key, label in (("energy_rmse", "E"), ("forces_rmse", "F"), ("stress_rmse", "S"))
        if key in errors
    ]
    return " ".join(parts)


def duration(seconds: float) -> str:
    """'1h02m', '4m05s', '12.3s'."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


def epoch_line(record: Mapping, n_epochs: int, elapsed_s: float, eta_s: float) -> str:
    """One line for the screen and train.log."""
    train = _errors(record.get("train_running", {}))
    valid = _errors(record.get("valid", {}).get("all", {}))
    return (
        f"epoch {record['epoch'] + 1}/{n_epochs} | lr {record['lr']:.2e} | train loss {record['train_loss']:.4g}"
        + (f" {train}" if train else "")
        + f" | valid loss {record['valid_loss']:.4g}"
        + (f" {valid}" if valid else "")
        + f" | {record['time_s']:.1f}s, total {duration(elapsed_s)}, ETA {duration(eta_s)}"
    )


def eta(epoch_times: Sequence[float], remaining: int) -> float:
    """Seconds left: the median of the last five epochs' times (the first, which compiles,
    only while it is all there is) times the epochs left."""
    if remaining <= 0:
        return 0.0
    recent = list(epoch_times[1:][-5:]) or list(epoch_times)
    return statistics.median(recent) * remaining if recent else math.nan


class RunMonitor:
    """Per-epoch reporting of one `train` call: screen (the `jaxtl.train` logger), train.log
    (everything `jaxtl` logs while the run lasts, appended on resume), the learning curve
    every `plot_every` epochs, and `writers`.

    `start()` before the epochs, `epoch(record)` after each, `stop()` at the end (also a
    context manager).
    """

    def __init__(
        self,
        out_dir: str | Path,
        n_epochs: int,
        writers: Iterable[ScalarWriter] = (),
        plot: bool = True,
        plot_every: int = PLOT_EVERY,
    ):
        self.out = Path(out_dir)
        self.n_epochs = n_epochs
        self.writers = list(writers)
        self.plot = plot
        self.plot_every = plot_every
        self.epoch_times: list[float] = []
        self._started = time.time()
        self._handler: logging.Handler | None = None
        self._level = logging.NOTSET

    def start(self) -> Self:
        jaxtl_log = logging.getLogger("jaxtl")
        self._handler = logging.FileHandler(self.out / "train.log", mode="a")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        jaxtl_log.addHandler(self._handler)
        self._level = jaxtl_log.level
        # the file gets every epoch whatever the screen shows (a screen handler's own level
        # decides what is printed), unless the caller set jaxtl's logger level themselves
        if jaxtl_log.level == logging.NOTSET and jaxtl_log.getEffectiveLevel() > logging.INFO:
            jaxtl_log.setLevel(logging.INFO)
        log.info(
            "run folder %s; errors as RMSE: E meV/atom, F meV/A, S meV/A^3 (train: running over the "
            "epoch's steps, config weights applied; valid: after the epoch)",
            self.out,
        )
        return self

    def epoch(self, record: dict) -> None:
        self.epoch_times.append(record["time_s"])
        remaining = self.n_epochs - record["epoch"] - 1
        left = eta(self.epoch_times, remaining)
        record["wall_s"] = time.time() - self._started
        record["eta_s"] = left
        log.info("%s", epoch_line(record, self.n_epochs, record["wall_s"], left))
        for writer in self.writers:
            writer.write(record["epoch"], scalars(record))
        if self.plot and (record["epoch"] + 1) % self.plot_every == 0:
            from jaxtl.train.plot import plot_learning_curve

            plot_learning_curve(self.out / "metrics.jsonl", self.out / "learning_curve.png")

    def stop(self) -> None:  # writers belong to the caller, who closes them
        jaxtl_log = logging.getLogger("jaxtl")
        if self._handler is not None:
            jaxtl_log.removeHandler(self._handler)
            self._handler.close()
        jaxtl_log.setLevel(self._level)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_default_writers: list[ScalarWriter] = []


def use_writers(writers: Iterable[ScalarWriter]) -> None:
    """Writers that `train` uses when it is given none (how the `jaxtl` command passes
    --tensorboard and --wandb through the fine-tuning and distillation entry points)."""
    _default_writers[:] = list(writers)


def default_writers() -> list[ScalarWriter]:
    return list(_default_writers)
