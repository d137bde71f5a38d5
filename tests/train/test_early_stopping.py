"""Early stopping: the loop stops `patience` epochs after the best validation loss and
keeps that epoch's (EMA) weights, which learning curves rely on to compare converged runs."""

import jax
import numpy as np
import pytest
import train_toy as T

from jaxtl.train import OptimizerConfig, TrainConfig, shuffled, train
from jaxtl.train.plot import read_log

BEST = 2


def _valid_batches(data):
    """epoch -> validation batches: the true labels at epoch BEST, shifted labels otherwise,
    so the best validation loss is at epoch BEST whatever the weights do."""
    shifted = [
        b._replace(labels=b.labels._replace(energy=b.labels.energy + 50.0, forces=b.labels.forces + 3.0)) for b in data
    ]
    return lambda epoch: data if epoch == BEST else shifted


def test_patience_stops_and_keeps_the_best_epoch(tmp_path):
    data = T.dataset(5, seed=3)
    cfg = TrainConfig(
        max_num_epochs=30,
        patience=3,
        dtype="float64",
        progress_bar=False,
        plot=False,
        ema=True,
        optimizer=OptimizerConfig(lr=0.05, scheduler="constant"),
    )
    stopped = train(
        T.predict, T.init_variables(0), shuffled(data[:3], 0), _valid_batches(data[3:]), cfg, tmp_path / "stopped"
    )
    epochs = [r["epoch"] for r in read_log(tmp_path / "stopped" / "metrics.jsonl")]
    assert epochs == list(range(BEST + 1 + cfg.patience))  # stopped long before max_num_epochs
    # The same run cut at epoch BEST ends on epoch BEST's weights: the early-stopped run kept them.
    cut = train(
        T.predict,
        T.init_variables(0),
        shuffled(data[:3], 0),
        _valid_batches(data[3:]),
        cfg.replace(max_num_epochs=BEST + 1),
        tmp_path / "cut",
    )
    jax.tree.map(np.testing.assert_array_equal, stopped.variables["params"], cut.variables["params"])
    # ... and not the last epoch's (the weights kept moving after BEST)
    longer = train(
        T.predict,
        T.init_variables(0),
        shuffled(data[:3], 0),
        lambda e: data[3:],
        cfg.replace(max_num_epochs=BEST + 1 + cfg.patience, patience=100),
        tmp_path / "last",
    )
    assert not np.allclose(
        jax.tree.leaves(longer.variables["params"])[0], jax.tree.leaves(stopped.variables["params"])[0]
    )


def _creeping_batches(data, start: float, rate: float):
    """epoch -> validation batches whose energy labels sit `start * (1 - rate) ** epoch` eV
    off, so the validation loss falls by about 2 * rate of itself per epoch."""

    def batches(epoch):
        shift = start * (1.0 - rate) ** epoch
        return [b._replace(labels=b.labels._replace(energy=b.labels.energy + shift)) for b in data]

    return batches


def test_min_rel_improvement_stops_a_creeping_loss(tmp_path):
    """A loss that falls by ~0.2 % an epoch never trips plain patience, but does trip a 1 %
    threshold; the kept weights are still those of the lowest loss (the last epoch)."""
    data = T.dataset(5, seed=3)
    cfg = TrainConfig(
        max_num_epochs=12,
        patience=3,
        dtype="float64",
        progress_bar=False,
        plot=False,
        optimizer=OptimizerConfig(lr=0.0, scheduler="constant"),
    )
    valid = _creeping_batches(data[3:], 100.0, 0.001)
    train(T.predict, T.init_variables(0), shuffled(data[:3], 0), valid, cfg, tmp_path / "plain")
    assert len(read_log(tmp_path / "plain" / "metrics.jsonl")) == cfg.max_num_epochs
    strict = cfg.replace(min_rel_improvement=0.01)
    train(T.predict, T.init_variables(0), shuffled(data[:3], 0), valid, strict, tmp_path / "strict")
    records = read_log(tmp_path / "strict" / "metrics.jsonl")
    # epoch 0 counts (anything beats inf); epochs 1-3 fall by < 1 %: stop after epoch 3
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    losses = [r["valid_loss"] for r in records]
    assert losses == sorted(losses, reverse=True) and losses[0] / losses[-1] < 1.01


def test_min_rel_improvement_is_checked():
    with pytest.raises(ValueError, match="min_rel_improvement"):
        TrainConfig(min_rel_improvement=1.5)
