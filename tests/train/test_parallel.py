"""Data parallel steps on 2 (forced host) CPU devices equal the single-device result to round-off."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

SCRIPT = r"""
import sys, json
import jax
jax.config.update("jax_enable_x64", True)
assert len(jax.devices()) == 2, jax.devices()
import jax.numpy as jnp, numpy as np
import train_toy as T
from jaxtl.train import TrainConfig, LossConfig, OptimizerConfig, make_optimizer, ema_init, shuffled, train
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxtl.train.parallel import make_mesh, stack_batches
from jaxtl.train.step import TrainState, make_train_step, make_eval_step

data = T.dataset(6, seed=4)
v = T.init_variables(0)
opt = make_optimizer(OptimizerConfig())
weights = {k: jnp.asarray(x) for k, x in LossConfig().weights().items()}
results = []
for n_dev in (1, 2):
    mesh = make_mesh(n_dev)
    step, counter = make_train_step(T.predict, "stress", 0.01, True, opt, 0.99, mesh)
    state = TrainState(jnp.zeros([], jnp.int32), v["params"], opt.init(v["params"]), ema_init(v["params"]))
    state = jax.device_put(state, NamedSharding(mesh, P()))  # replicated, as the step returns it
    losses = []
    for i in range(3):
        stacked = stack_batches(data[2 * i: 2 * i + 2])
        state, stats = step(state, v["constants"], stacked, jnp.asarray(0.01), weights)
        losses.append(float(stats["loss"]))
    ev, _ = make_eval_step(T.predict, "stress", 0.01, True, mesh)
    terms, errors = ev(state.params, v["constants"], stack_batches(data[:2]))
    results.append((state, losses, terms, errors, counter["train"]))
(s1, l1, t1, e1, c1), (s2, l2, t2, e2, c2) = results
np.testing.assert_allclose(l1, l2, rtol=1e-12)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-15), s1, s2)
jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), (t1, e1), (t2, e2))
assert c1 == c2 == 1, (c1, c2)
# The trainer on 2 devices (an odd number of batches: the last group is completed with a blank batch).
cfg = TrainConfig(max_num_epochs=2, dtype="float64", n_devices=2, progress_bar=False, plot=False)
res = train(T.predict, v, shuffled(data[:5], 0), data[5:], cfg, sys.argv[1])
assert res.n_compiles == {"train": 1, "eval": 1}, res.n_compiles
assert all(np.isfinite(r["train_loss"]) for r in res.history)
print("OK")
"""


def test_two_devices_match_one(tmp_path):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent.parent), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-4000:]
