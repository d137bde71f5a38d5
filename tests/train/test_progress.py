"""Watching a run (jaxtl/train/progress.py): epoch lines with RMSEs and ETA on screen and in
train.log, metrics.jsonl fields, the learning curve redrawn during the run, scalar writers."""

import json
import logging
import math

import numpy as np
import pytest
import train_toy as T

from jaxtl.train import OptimizerConfig, TrainConfig, shuffled, train
from jaxtl.train.progress import duration, epoch_line, eta, running_errors, scalars


class ListWriter:
    """A `ScalarWriter` that keeps what it is given, and whether the curve was on disk then."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.rows = []
        self.closed = False

    def write(self, step, values):
        self.rows.append((step, dict(values), (self.out_dir / "learning_curve.png").exists()))

    def close(self):
        self.closed = True


def _cfg(epochs):
    return TrainConfig(
        max_num_epochs=epochs,
        dtype="float64",
        progress_bar=False,
        optimizer=OptimizerConfig(lr=0.05, scheduler="constant"),
    )


def test_running_errors_are_rmse_in_mev():
    terms = {"energy": (4e-6 * 3, 3.0), "forces": (0.01 * 6, 6.0)}
    errors = running_errors(terms, "weighted")
    assert errors["energy_rmse"] == pytest.approx(2.0) and errors["forces_rmse"] == pytest.approx(100.0)
    assert running_errors(terms, "huber") == {}  # not a mean square: no RMSE to give


def test_eta_leaves_out_the_compiling_epoch():
    assert eta([30.0], 10) == 300.0  # all there is
    assert eta([30.0, 2.0, 2.0, 4.0], 10) == 20.0
    assert eta([1.0, 2.0], 0) == 0.0
    assert duration(12.34) == "12.3s" and duration(245) == "4m05s" and duration(3720) == "1h02m"


def test_epoch_line_and_scalars():
    record = {
        "epoch": 4,
        "lr": 0.01,
        "train_loss": 0.5,
        "valid_loss": 0.25,
        "time_s": 2.0,
        "train_running": {"energy_rmse": 3.0, "forces_rmse": 80.0},
        "valid": {"all": {"energy_rmse": 4.0, "forces_rmse": 90.0, "stress_rmse": 1.5, "n_graphs": 3}},
    }
    line = epoch_line(record, 10, 130.0, 60.0)
    assert line.startswith("epoch 5/10") and "E 3.00 F 80.00" in line and "E 4.00 F 90.00 S 1.50" in line
    assert "total 2m10s" in line and "ETA 1m00s" in line
    assert scalars(record) == {
        "train/loss": 0.5,
        "valid/loss": 0.25,
        "lr": 0.01,
        "train/energy_rmse": 3.0,
        "train/forces_rmse": 80.0,
        "valid/energy_rmse": 4.0,
        "valid/forces_rmse": 90.0,
        "valid/stress_rmse": 1.5,
    }


def test_a_run_reports_every_epoch_everywhere(tmp_path, caplog):
    data = T.dataset(6, seed=2)
    writer = ListWriter(tmp_path)
    with caplog.at_level(logging.INFO, logger="jaxtl.train"):
        res = train(
            T.predict, T.init_variables(0), shuffled(data[:4], 0), data[4:], _cfg(12), tmp_path, writers=[writer]
        )
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(12))
    for r in records:
        assert set(r["train_running"]) == {"energy_rmse", "forces_rmse"}
        assert all(math.isfinite(v) and v > 0 for v in r["train_running"].values())
        assert r["wall_s"] > 0 and r["eta_s"] >= 0
    assert records[-1]["eta_s"] == 0
    # train.log and the screen get the same epoch lines, with both splits' errors and an ETA
    log_lines = [line for line in (tmp_path / "train.log").read_text().splitlines() if " epoch " in line]
    screen = [m for m in caplog.messages if m.startswith("epoch ")]
    assert len(log_lines) == len(screen) == 12
    assert all("train loss" in m and "valid loss" in m and "ETA" in m and " F " in m for m in screen)
    assert log_lines[0].endswith(screen[0])
    # the writer saw each epoch; the curve was on disk from epoch 10 on (redrawn every 10 epochs)
    assert [step for step, _, _ in writer.rows] == list(range(12))
    assert [on_disk for _, _, on_disk in writer.rows] == [False] * 10 + [True] * 2
    assert writer.rows[3][1]["valid/forces_rmse"] == pytest.approx(records[3]["valid"]["all"]["forces_rmse"])
    assert not writer.closed  # the caller's to close
    assert np.isfinite(res.history[-1]["valid_loss"])
    assert not logging.getLogger("jaxtl").handlers  # the run's file handler is gone


def test_resumed_run_appends_to_train_log(tmp_path):
    data = T.dataset(6, seed=2)
    train(T.predict, T.init_variables(0), shuffled(data[:4], 0), data[4:], _cfg(2), tmp_path, writers=[])
    train(T.predict, T.init_variables(0), shuffled(data[:4], 0), data[4:], _cfg(4), tmp_path, writers=[], resume=True)
    epochs = [
        line.split(" epoch ")[1].split()[0]
        for line in (tmp_path / "train.log").read_text().splitlines()
        if " epoch " in line and "|" in line
    ]
    assert epochs == ["1/2", "2/2", "3/4", "4/4"]


@pytest.fixture(scope="module")
def tiny_xyz(tmp_path_factory):
    from jaxtl.demo import make_data

    return make_data(tmp_path_factory.mktemp("data"), n_foundation=12, n_target=2, n_test=2)["foundation"]


def _jaxtl(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "jaxtl.cli", "--no-cpu-tuning", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_quiet_command_keeps_the_screen_clear_and_the_log_full(tiny_xyz, tmp_path):
    out = tmp_path / "run"
    proc = _jaxtl(
        "train",
        "--train",
        tiny_xyz,
        "--epochs",
        2,
        "--out",
        out,
        "--quiet",
        "--hidden-irreps",
        "4x0e",
        "--max-ell",
        1,
        "--correlation",
        2,
        "--radial-mlp",
        8,
        "--batch-size",
        4,
        "--r-max",
        4.0,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1/2" not in proc.stderr + proc.stdout and "it/s" not in proc.stderr  # no epoch lines, no bars
    assert "epoch 1/2" in (out / "train.log").read_text() and "epoch 2/2" in (out / "train.log").read_text()


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorboardX") is not None,
    reason="tensorboardX is installed: the missing-extra message cannot be shown",
)
def test_missing_extra_is_named(tiny_xyz, tmp_path):
    proc = _jaxtl("train", "--train", tiny_xyz, "--epochs", 1, "--out", tmp_path / "run", "--tensorboard", tmp_path)
    assert proc.returncode == 2 and "pip install jaxtl[tensorboard]" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("tty", [False, True])
def test_batch_bars_only_on_a_terminal(tmp_path, monkeypatch, tty):
    """A run whose output goes to a file or pipe gets the epoch lines but no batch bars
    (carriage-return frames would fill the log)."""
    import io

    class Stream(io.StringIO):
        def isatty(self):
            return tty

    stream = Stream()
    monkeypatch.setattr("sys.stderr", stream)
    data = T.dataset(4, seed=1)
    cfg = TrainConfig(
        max_num_epochs=1,
        dtype="float64",
        progress_bar=True,
        plot=False,
        optimizer=OptimizerConfig(lr=0.01, scheduler="constant"),
    )
    train(T.predict, T.init_variables(0), shuffled(data[:3], 0), lambda e: data[3:], cfg, tmp_path / "run")
    assert ("it/s" in stream.getvalue() or "s/it" in stream.getvalue()) == tty
