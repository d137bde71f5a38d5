"""Learning-curve plot from the JSON-lines metrics log (matplotlib is optional)."""

from __future__ import annotations

import json
import logging
from pathlib import Path


def read_log(path: str | Path) -> list[dict]:
    """Per-epoch records of a metrics.jsonl file."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_learning_curve(log_path: str | Path, out_png: str | Path) -> Path | None:
    """Train/valid loss and energy/force RMSE per epoch; None without matplotlib.

    Drawn on a bare `Figure`: no pyplot, so the caller's matplotlib backend is left alone
    (a notebook's plots keep working while a run redraws its curve)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        logging.info("matplotlib not installed: no learning-curve plot")
        return None
    records = [r for r in read_log(log_path) if "epoch" in r and "train_loss" in r]
    if not records:
        return None
    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].semilogy(epochs, [r["train_loss"] for r in records], label="train")
    axes[0].semilogy(epochs, [r["valid_loss"] for r in records], label="valid")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    for ax, key, unit in ((axes[1], "energy_rmse", "meV/atom"), (axes[2], "forces_rmse", "meV/A")):
        for split, values in (
            ("train (running)", [r.get("train_running", {}).get(key) for r in records]),
            ("valid", [r.get("valid", {}).get("all", {}).get(key) for r in records]),
        ):
            if any(v is not None for v in values):
                ax.semilogy(epochs, [float("nan") if v is None else v for v in values], label=split)
        ax.set_ylabel(f"{key} ({unit})")
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    out_png = Path(out_png)
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(out_png)  # a viewer never sees a half-written file
    return out_png


def plot_data_efficiency(rows, path, group_key: str, title: str, xlabel: str = "training structures") -> None:
    """Log-log test energy and force RMSE against training-set size, one line per `group_key`.

    rows: dicts with `n_train`, `energy_rmse` (meV/atom), `forces_rmse` (meV/A) and `group_key`.
    Does nothing when matplotlib is missing.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    for name in dict.fromkeys(r[group_key] for r in rows):
        rs = [r for r in rows if r[group_key] == name]
        for ax, key in zip(axes, ("energy_rmse", "forces_rmse")):
            ax.loglog([r["n_train"] for r in rs], [r[key] for r in rs], "o-", label=name)
    axes[0].set_ylabel("test energy RMSE (meV/atom)")
    axes[1].set_ylabel("test force RMSE (meV/A)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
