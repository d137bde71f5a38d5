"""The training loop on the toy model: learning, compilations, NaN stop, stage two, config and model I/O."""

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
import train_toy as T

from jaxtl.train import (
    LossConfig,
    NonFiniteLossError,
    OptimizerConfig,
    StageTwoConfig,
    TrainConfig,
    load_model_config,
    load_model_variables,
    save_model,
    shuffled,
    train,
)
from jaxtl.train.checkpoint import LATEST, Checkpointer


@pytest.fixture(scope="module")
def data():
    return T.dataset(6, seed=2)


def _cfg(**kw):
    base = dict(
        max_num_epochs=12, dtype="float64", progress_bar=False, optimizer=OptimizerConfig(lr=0.1, scheduler="constant")
    )
    base.update(kw)
    return TrainConfig(**base)


def test_toy_model_learns_with_one_compilation(data, tmp_path):
    with_types = [(b, ["a", "b", "a"]) for b in data]
    cfg = _cfg(ema=True, stage_two=StageTwoConfig(enabled=True, start_epoch=10, swa_lr=1e-3))
    res = train(
        T.predict,
        T.init_variables(0),
        shuffled(with_types[:4], 0),
        with_types[4:],
        cfg,
        tmp_path,
        test_batches=with_types[4:],
        model_config={"r_max": T.R_MAX},
    )
    losses = [r["valid_loss"] for r in res.history if r["stage"] == 1]
    assert losses[-1] < 0.25 * losses[0]
    assert res.n_compiles == {"train": 1, "eval": 1}
    # Stage two: new weights (a different loss scale) and the swa lr from epoch 10 on.
    assert [r["stage"] for r in res.history] == [1] * 10 + [2] * 2
    assert [r["lr"] for r in res.history[9:]] == [0.1, 1e-3, 1e-3]
    assert set(res.metrics) == {"train", "valid", "test"} and {"a", "b", "all"} <= set(res.metrics["valid"])
    assert res.metrics["valid"]["all"]["forces_rmse"] < 1e3 * 1.0
    for name in ("train_config.json", "train_config.yaml", "metrics.jsonl", "final_metrics.json", "learning_curve.png"):
        assert (tmp_path / name).exists(), name
    assert TrainConfig.load(tmp_path / "train_config.yaml") == cfg
    assert TrainConfig.load(tmp_path / "train_config.json") == cfg
    assert load_model_config(tmp_path / "model") == {"r_max": T.R_MAX}
    final = load_model_variables(tmp_path / "model")
    jax.tree.map(np.testing.assert_array_equal, final, res.variables)
    # The best stage-two checkpoint is the final model.
    assert (tmp_path / "checkpoints" / "best_stage_two").exists()


def test_nan_batch_stops_and_keeps_last_good_checkpoint(data, tmp_path):
    bad = data[3]._replace(labels=data[3].labels._replace(energy=np.full_like(data[3].labels.energy, np.nan)))

    def batches(epoch):
        return data[:3] + ([bad] if epoch == 2 else [data[3]])

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, batch 3") as err:
        train(T.predict, T.init_variables(0), batches, data[4:], _cfg(max_num_epochs=5), tmp_path)
    named = re.search(r"Last good checkpoint: the latest in (\S+) ", str(err.value))
    assert named and Path(named.group(1)).is_dir() and any(Path(named.group(1)).iterdir())
    c = Checkpointer(tmp_path)
    arrays, meta = c.restore(LATEST)
    c.close()
    assert meta["epoch"] == 2
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(arrays))
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["event"] == "non_finite_loss"
    # Starting again in the same folder without resume is refused.
    with pytest.raises(FileExistsError):
        train(T.predict, T.init_variables(0), batches, data[4:], _cfg(max_num_epochs=5), tmp_path)


def test_only_params_change_and_model_io(data, tmp_path):
    v = T.init_variables(0)
    v["constants"]["scale"] = np.float64(0.5)
    res = train(T.predict, v, shuffled(data[:2], 0), data[4:], _cfg(max_num_epochs=2, plot=False), tmp_path)
    assert float(res.variables["constants"]["scale"]) == 0.5
    assert not np.array_equal(res.variables["params"]["E0s"], v["params"]["E0s"])
    save_model(tmp_path / "m", {"x": 1}, v)
    save_model(tmp_path / "m", {"x": 2}, v)  # overwrites
    assert load_model_config(tmp_path / "m") == {"x": 2}
    jax.tree.map(np.testing.assert_array_equal, load_model_variables(tmp_path / "m"), v)


def test_config_defaults_and_round_trip(tmp_path):
    cfg = TrainConfig()
    assert cfg.dtype == "float32" and cfg.loss.forces_weight == 100.0 and cfg.optimizer.scheduler == "plateau"
    assert cfg.stage_two.energy_weight == 1000.0 and cfg.ema_decay == 0.99
    changed = cfg.replace(loss=LossConfig(loss="universal"), n_devices=2)
    assert changed.wants_stress and not cfg.wants_stress
    changed.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == changed
    with pytest.raises(ValueError):
        LossConfig(loss="nope")


def test_checkpoints_are_written_at_the_interval_and_results_do_not_depend_on_it(data, tmp_path, monkeypatch):
    written = []
    save = Checkpointer.save

    def spy(self, name, step, arrays, meta):
        written.append((name, step, meta["epoch"]))
        return save(self, name, step, arrays, meta)

    monkeypatch.setattr(Checkpointer, "save", spy)
    every, rare = [], []
    results = {}
    for interval, log in ((0.0, every), (1e9, rare)):
        written.clear()
        cfg = _cfg(max_num_epochs=6, plot=False, checkpoint_interval_s=interval)
        results[interval] = train(
            T.predict, T.init_variables(0), shuffled(data[:4], 0), data[4:], cfg, tmp_path / str(interval)
        )
        log.extend(written)
    assert [step for name, step, _ in every if name == LATEST] == [1, 2, 3, 4, 5, 6]
    # the first epoch, then the end: the best (when not written yet) before the latest
    assert [(name, step) for name, step, _ in rare if name == LATEST] == [(LATEST, 1), (LATEST, 6)]
    assert rare[-1][0] == LATEST and all(step == epoch for _, step, epoch in rare)
    best = [step for name, step, _ in every if name == "best"]
    assert [step for name, step, _ in rare if name == "best"] == [best[0]] + ([best[-1]] if best[-1] != best[0] else [])
    jax.tree.map(np.testing.assert_array_equal, results[0.0].variables, results[1e9].variables)
    with pytest.raises(ValueError, match="checkpoint_interval_s"):
        _cfg(checkpoint_interval_s=-1)
