"""`jaxtl learning-curve --devices 2`: each cell trains on the data mesh of two (forced host) CPU
devices and gives the one-device cell's metrics to round-off.

The grid's --batch-size is the global batch of a step. With 8 training structures and a
global batch of 8, one device takes one batch of 8 a step and two devices one batch of 4
each, so both see the same structures each step and (float64) the same losses, weights
and test errors to round-off.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_grid import cli_args

ROOT = Path(__file__).resolve().parents[2]
METRICS = ("energy_rmse", "forces_rmse", "energy_mae", "forces_mae", "best_valid_loss")


def _run(args: list[str], devices: int) -> None:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-m", "jaxtl.cli", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-4000:]


def _cells(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("cells/*/cell.json"))}


def test_cells_on_two_devices_match_one_device(tiny, tmp_path):
    from jaxtl.learning_curve import ConvergenceSettings, DataSettings, GridSettings, LearningCurveConfig

    config = LearningCurveConfig(
        DataSettings(str(tiny["foundation"]), str(tiny["pool"]), str(tiny["test"]), valid_fraction=0.2, batch_size=8),
        GridSettings(fractions=(0.5,), strategies=("scratch", "f5"), seeds=1),
        ConvergenceSettings(patience=5, max_epochs=2),
    )
    one, two = tmp_path / "one", tmp_path / "two"
    _run([*cli_args(config, one), "--dtype", "float64"], devices=1)
    _run([*cli_args(config, two), "--dtype", "float64", "--devices", "2"], devices=2)
    a, b = _cells(one), _cells(two)
    assert sorted(a) == sorted(b) == ["0.5_f5_s0", "0.5_scratch_s0"]
    for name in a:
        assert (a[name]["n_devices"], b[name]["n_devices"]) == (1, 2)
        assert a[name]["n_train"] == 8 and a[name]["epochs_run"] == b[name]["epochs_run"] == 2
        np.testing.assert_allclose([b[name][k] for k in METRICS], [a[name][k] for k in METRICS], rtol=1e-9)
    # the batch is the global batch: the saved grid settings are the same for both
    assert json.loads((one / "grid_config.json").read_text()) == json.loads((two / "grid_config.json").read_text())


def test_a_global_batch_that_does_not_split_over_the_devices_is_refused(tiny, tmp_path):
    from jaxtl.learning_curve import DataSettings, LearningCurveConfig, learning_curve

    config = LearningCurveConfig(
        DataSettings(str(tiny["foundation"]), str(tiny["pool"]), str(tiny["test"]), batch_size=5)
    )
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        learning_curve(config, tmp_path / "odd", n_devices=2)
