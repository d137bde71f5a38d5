"""Optimiser, schedules and EMA against torch (Adam/AMSGrad, ReduceLROnPlateau, torch_ema)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxtl.train.ema import ema_init, ema_update
from jaxtl.train.optimizer import FROZEN, OptimizerConfig, PlateauState, make_optimizer, plateau_update, scheduled_lr

PARAMS = {"embedding": {"w": np.linspace(-1, 1, 6).reshape(2, 3)}, "readout": {"w": np.array([0.3, -0.2])}}


def _grads(i):
    rng = np.random.default_rng(i)
    return jax.tree.map(lambda p: rng.normal(size=p.shape) * (5.0 if i % 2 else 0.5), PARAMS)


def _run(cfg, labels=None, transforms=None, steps=6, lr=0.01):
    opt = make_optimizer(cfg, labels, transforms)
    params = jax.tree.map(jnp.asarray, PARAMS)
    state = opt.init(params)
    for i in range(steps):
        updates, state = opt.update(jax.tree.map(jnp.asarray, _grads(i)), state, params, learning_rate=lr)
        params = optax.apply_updates(params, updates)
    return params


@pytest.mark.parametrize("optimizer,amsgrad", [("adam", True), ("adam", False), ("adamw", True)])
def test_matches_torch_adam_with_clipping(optimizer, amsgrad):
    torch = pytest.importorskip("torch")
    cfg = OptimizerConfig(optimizer=optimizer, amsgrad=amsgrad, weight_decay=0.05, clip_grad=2.0)
    got = _run(cfg)
    tp = {k: torch.tensor(v["w"], requires_grad=True) for k, v in PARAMS.items()}
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    opt = cls(list(tp.values()), lr=0.01, amsgrad=amsgrad, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8)
    for i in range(6):
        for k, g in _grads(i).items():
            tp[k].grad = torch.tensor(g["w"])
        torch.nn.utils.clip_grad_norm_(list(tp.values()), max_norm=2.0)
        opt.step()
    for k in PARAMS:
        np.testing.assert_allclose(got[k]["w"], tp[k].detach().numpy(), rtol=1e-12, atol=1e-14)


def test_frozen_and_soft_labels():
    torch = pytest.importorskip("torch")
    labels = {"embedding": {"w": FROZEN}, "readout": {"w": "soft"}}
    cfg = OptimizerConfig(clip_grad=2.0, weight_decay=0.0)
    got = _run(cfg, labels, {"soft": optax.scale(0.1)})
    np.testing.assert_array_equal(got["embedding"]["w"], PARAMS["embedding"]["w"])
    # Readout alone, lr x 0.1, clipped by its own norm (frozen grads are not counted), as torch with
    # requires_grad=False on the embedding.
    w = torch.tensor(PARAMS["readout"]["w"], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.001, amsgrad=True, weight_decay=0.0)
    for i in range(6):
        w.grad = torch.tensor(_grads(i)["readout"]["w"])
        torch.nn.utils.clip_grad_norm_([w], max_norm=2.0)
        opt.step()
    np.testing.assert_allclose(got["readout"]["w"], w.detach().numpy(), rtol=1e-12)
    # Frozen parameters carry no optimiser state.
    state = make_optimizer(cfg, labels, {"soft": optax.scale(0.1)}).init(jax.tree.map(jnp.asarray, PARAMS))
    assert sum(x.size for x in jax.tree.leaves(state)) < 4 * 2 + 10


def test_plateau_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = OptimizerConfig(lr=0.01, lr_factor=0.5, scheduler_patience=2, plateau_cooldown=1)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2, cooldown=1)
    state = PlateauState()
    losses = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.8]
    for v in losses:
        sched.step(v)
        state = plateau_update(state, v, cfg)
        assert scheduled_lr(cfg, 0, 0, state) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
    assert state.scale < 1


def test_schedules():
    assert scheduled_lr(OptimizerConfig(scheduler="exponential", lr_scheduler_gamma=0.9), 0, 3) == pytest.approx(
        0.01 * 0.9**3
    )
    cos = OptimizerConfig(scheduler="cosine", decay_epochs=10, min_lr_factor=0.1)
    assert scheduled_lr(cos, 0, 0) == pytest.approx(0.01)
    assert scheduled_lr(cos, 0, 10) == pytest.approx(0.001)
    assert scheduled_lr(cos, 0, 5) == pytest.approx(0.0055)
    warm = OptimizerConfig(scheduler="constant", warmup_steps=4)
    assert [scheduled_lr(warm, s, 0) for s in range(5)] == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01])
    assert OptimizerConfig().lr == 0.01 and OptimizerConfig().amsgrad and OptimizerConfig().clip_grad == 10.0
    assert OptimizerConfig().weight_decay == 5e-7


def test_ema_matches_torch_ema():
    torch = pytest.importorskip("torch")
    torch_ema = pytest.importorskip("torch_ema")
    p = torch.nn.Parameter(torch.tensor(PARAMS["readout"]["w"]))
    ema = torch_ema.ExponentialMovingAverage([p], decay=0.99)
    state = ema_init({"w": jnp.asarray(PARAMS["readout"]["w"])})
    for i in range(30):
        new = PARAMS["readout"]["w"] + np.sin(i + np.arange(2))
        with torch.no_grad():
            p.copy_(torch.tensor(new))
        ema.update()
        state = ema_update(state, {"w": jnp.asarray(new)}, 0.99)
    np.testing.assert_allclose(state.params["w"], ema.shadow_params[0].numpy(), rtol=1e-13)
    assert int(state.count) == 30
