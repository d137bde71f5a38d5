"""Optimiser (optax compositions) and learning-rate schedules, mace-torch defaults.

The optimiser is built from labels, so freezing is data, not a flag:

    labels = lambda params: jax.tree_util.tree_map_with_path(my_label_fn, params)
    opt = make_optimizer(cfg, param_labels=labels,
                         label_transforms={"soft": optax.scale(0.1)})

- every parameter carries a label (default "trainable");
- "frozen" parameters get no optimiser state, no update (`optax.set_to_zero`) and
  are left out of the gradient-norm clipping (as torch's `requires_grad=False`);
- any other label runs the same Adam/AdamW and then its own transformation on the
  update (`optax.scale(f)` = that group's lr times f, mace-torch's lr factors).

The learning rate is not baked into the optimiser: `update` takes it as an extra
argument, `opt.update(grads, state, params, learning_rate=lr)`. The trainer
computes `lr` on the host from (step, epoch, plateau state, stage), so plateau
reductions and the stage-two switch are plain data that resume exactly and do not
recompile the step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

TRAINABLE = "trainable"
FROZEN = "frozen"
SCHEDULERS = ("constant", "exponential", "cosine", "plateau")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Optimiser and schedule settings (mace-torch CLI names and defaults).

    Attributes:
        optimizer: "adam" (L2 weight decay added to the gradient, torch Adam) or
            "adamw" (decoupled weight decay).
        lr: base learning rate.
        amsgrad: AMSGrad with torch's convention (max of the raw second moment).
        beta1, beta2, eps: Adam constants.
        weight_decay: weight decay (parameters selected by `decay_filter`).
        clip_grad: max global gradient norm over non-frozen parameters (None: off).
        scheduler: "constant", "exponential" (lr gamma^epoch), "cosine" (from lr
            to lr*min_lr_factor over `decay_epochs`) or "plateau"
            (ReduceLROnPlateau on the validation loss, stepped once per epoch).
        lr_factor, scheduler_patience, plateau_threshold, plateau_cooldown,
            min_lr: ReduceLROnPlateau settings (torch semantics, mode "min",
            relative threshold).
        lr_scheduler_gamma: ExponentialLR factor per epoch.
        decay_epochs, min_lr_factor: cosine schedule length and floor.
        warmup_steps: linear warm-up of the lr over the first steps (0: none);
            multiplies whichever schedule is chosen.
    """

    optimizer: str = "adam"
    lr: float = 0.01
    amsgrad: bool = True
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 5e-7
    clip_grad: float | None = 10.0
    scheduler: str = "plateau"
    lr_factor: float = 0.8
    scheduler_patience: int = 50
    plateau_threshold: float = 1e-4
    plateau_cooldown: int = 0
    min_lr: float = 0.0
    lr_scheduler_gamma: float = 0.9993
    decay_epochs: int = 2048
    min_lr_factor: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self):
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")


# ---------------------------------------------------------------- transformations


class TorchAmsgradState(NamedTuple):
    count: jnp.ndarray
    mu: Any
    nu: Any
    nu_max: Any


def scale_by_torch_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """AMSGrad as torch.optim.Adam(amsgrad=True) computes it.

    torch keeps the running maximum of the *raw* second moment and bias-corrects
    it with the current step; `optax.scale_by_amsgrad` takes the maximum of the
    bias-corrected moment. The two differ in early steps; this one matches
    mace-torch.
    """

    def init(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return TorchAmsgradState(jnp.zeros([], jnp.int32), zeros(), zeros(), zeros())

    def update(updates, state, params=None):
        del params
        count = state.count + 1
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
        t = count.astype(jnp.float32)

        def step(m, vmax):
            bc1 = 1 - jnp.asarray(b1, m.dtype) ** t.astype(m.dtype)
            bc2 = 1 - jnp.asarray(b2, m.dtype) ** t.astype(m.dtype)
            return (m / bc1) / (jnp.sqrt(vmax) / jnp.sqrt(bc2) + eps)

        return jax.tree.map(step, mu, nu_max), TorchAmsgradState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """torch.nn.utils.clip_grad_norm_: scale by min(1, max_norm / (norm + 1e-6)).

    Unlike `optax.clip_by_global_norm` torch adds 1e-6 to the norm, which
    shows in float64 comparisons.
    """

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        norm = optax.tree.norm(updates)
        coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
        return jax.tree.map(lambda g: (g * coef).astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def scale_by_learning_rate_arg() -> optax.GradientTransformationExtraArgs:
    """Multiply updates by `-learning_rate`, given as an extra argument to `update`."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None, *, learning_rate, **extra):
        del params, extra
        return jax.tree.map(lambda u: -jnp.asarray(learning_rate, u.dtype) * u, updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def _path_mask(decay_filter: Callable[[tuple, Any], bool] | None):
    if decay_filter is None:
        return None
    return lambda params: jax.tree_util.tree_map_with_path(decay_filter, params)


def _direction(cfg: OptimizerConfig, decay_filter) -> optax.GradientTransformation:
    """The unit-lr Adam(W) step of one label group."""
    if cfg.amsgrad:
        adam = scale_by_torch_amsgrad(cfg.beta1, cfg.beta2, cfg.eps)
    else:
        adam = optax.scale_by_adam(cfg.beta1, cfg.beta2, cfg.eps)
    mask = _path_mask(decay_filter)
    parts = []
    if cfg.optimizer == "adam" and cfg.weight_decay:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask))  # L2 into the gradient
    parts.append(adam)
    if cfg.optimizer == "adamw" and cfg.weight_decay:
        parts.append(optax.add_decayed_weights(cfg.weight_decay, mask))  # decoupled
    return optax.chain(*parts)


def make_optimizer(
    cfg: OptimizerConfig,
    param_labels: Any | Callable[[Any], Any] | None = None,
    label_transforms: Mapping[str, optax.GradientTransformation] | None = None,
    decay_filter: Callable[[tuple, Any], bool] | None = None,
) -> optax.GradientTransformationExtraArgs:
    """Adam/AdamW with clipping, per-label transformations and an lr argument.

    Args:
        cfg: optimiser settings.
        param_labels: a pytree of labels matching the params, or a function
            params -> such a pytree (e.g. from jaxtl.finetune). None: all
            "trainable".
        label_transforms: label -> transformation applied to the Adam update of
            that group after the lr (e.g. {"soft": optax.scale(0.1)}). "trainable"
            defaults to identity and "frozen" to `optax.set_to_zero()`.
        decay_filter: (path, leaf) -> bool, the parameters weight decay applies
            to (None: all; mace-torch decays only some groups).

    Returns:
        A transformation whose `update(grads, state, params, learning_rate=lr)`
        returns the parameter increments (apply with `optax.apply_updates`).
    """
    transforms = {TRAINABLE: optax.identity(), FROZEN: optax.set_to_zero()}
    transforms.update(label_transforms or {})
    if param_labels is None:
        param_labels = lambda params: jax.tree.map(lambda _: TRAINABLE, params)

    groups = {}
    for label, t in transforms.items():
        if label == FROZEN:
            groups[label] = t
        else:
            groups[label] = optax.chain(_direction(cfg, decay_filter), scale_by_learning_rate_arg(), t)
    # Frozen gradients are zeroed first so that they do not count in the norm.
    drop_frozen = optax.multi_transform(
        {label: (optax.set_to_zero() if label == FROZEN else optax.identity()) for label in transforms}, param_labels
    )
    parts = [drop_frozen]
    if cfg.clip_grad is not None:
        parts.append(clip_by_global_norm_torch(cfg.clip_grad))
    parts.append(optax.multi_transform(groups, param_labels))
    return optax.chain(*parts)


# ---------------------------------------------------------------- schedules


@dataclasses.dataclass(frozen=True)
class PlateauState:
    """ReduceLROnPlateau state; `scale` multiplies the scheduled lr."""

    best: float = math.inf
    num_bad_epochs: int = 0
    cooldown_counter: int = 0
    scale: float = 1.0


def plateau_update(state: PlateauState, value: float, cfg: OptimizerConfig) -> PlateauState:
    """One epoch of torch's ReduceLROnPlateau (mode "min", threshold_mode "rel")."""
    best, bad, cooldown, scale = state.best, state.num_bad_epochs, state.cooldown_counter, state.scale
    if value < best * (1.0 - cfg.plateau_threshold):
        best, bad = float(value), 0
    else:
        bad += 1
    if cooldown > 0:
        cooldown -= 1
        bad = 0
    if bad > cfg.scheduler_patience:
        old_lr = cfg.lr * scale
        new_lr = max(old_lr * cfg.lr_factor, cfg.min_lr)
        if old_lr - new_lr > 1e-8:
            scale = new_lr / cfg.lr
        cooldown, bad = cfg.plateau_cooldown, 0
    return PlateauState(best, bad, cooldown, scale)


def scheduled_lr(cfg: OptimizerConfig, step: int, epoch: int, plateau: PlateauState | None = None) -> float:
    """Learning rate at optimiser `step` (0-based) within `epoch` (0-based)."""
    if cfg.scheduler == "exponential":
        lr = cfg.lr * cfg.lr_scheduler_gamma**epoch
    elif cfg.scheduler == "cosine":
        t = min(epoch, cfg.decay_epochs) / max(cfg.decay_epochs, 1)
        lr = cfg.lr * (cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * t)))
    elif cfg.scheduler == "plateau":
        lr = cfg.lr * (plateau.scale if plateau is not None else 1.0)
    else:
        lr = cfg.lr
    if cfg.warmup_steps > 0:
        lr *= min(1.0, (step + 1) / cfg.warmup_steps)
    return lr
