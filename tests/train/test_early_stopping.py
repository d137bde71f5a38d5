"""Early stopping: the loop stops `patience` epochs after the best validation loss and
keeps that epoch's (EMA) weights, which learning curves rely on to compare converged runs."""

import jax
import numpy as np
import train_toy as T

from jaxtl.train import OptimizerConfig, TrainConfig, shuffled, train
from jaxtl.train.plot import read_log

BEST = 2


def _valid_batches(data):
    """epoch -> validation batches: the true labels at epoch BEST, shifted labels otherwise,
    so the best validation loss is at epoch BEST whatever the weights do."""
    shifted = [b._replace(labels=b.labels._replace(energy=b.labels.energy + 50.0, forces=b.labels.forces + 3.0))
               for b in data]
    return lambda epoch: data if epoch == BEST else shifted


def test_patience_stops_and_keeps_the_best_epoch(tmp_path):
    data = T.dataset(5, seed=3)
    cfg = TrainConfig(max_num_epochs=30, patience=3, dtype="float64", progress_bar=False, plot=False, ema=True,
                      optimizer=OptimizerConfig(lr=0.05, scheduler="constant"))
    stopped = train(T.predict, T.init_variables(0), shuffled(data[:3], 0), _valid_batches(data[3:]), cfg,
                    tmp_path / "stopped")
    epochs = [r["epoch"] for r in read_log(tmp_path / "stopped" / "metrics.jsonl")]
    assert epochs == list(range(BEST + 1 + cfg.patience))  # stopped long before max_num_epochs
    # The same run cut at epoch BEST ends on epoch BEST's weights: the early-stopped run kept them.
    cut = train(T.predict, T.init_variables(0), shuffled(data[:3], 0), _valid_batches(data[3:]),
                cfg.replace(max_num_epochs=BEST + 1), tmp_path / "cut")
    jax.tree.map(np.testing.assert_array_equal, stopped.variables["params"], cut.variables["params"])
    # ... and not the last epoch's (the weights kept moving after BEST)
    longer = train(T.predict, T.init_variables(0), shuffled(data[:3], 0), lambda e: data[3:],
                   cfg.replace(max_num_epochs=BEST + 1 + cfg.patience, patience=100), tmp_path / "last")
    assert not np.allclose(jax.tree.leaves(longer.variables["params"])[0],
                           jax.tree.leaves(stopped.variables["params"])[0])
