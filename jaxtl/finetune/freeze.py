"""Freezing as data: label functions over the parameter tree, and their optax transforms.

A label pytree has the structure of `params` and one string per leaf:

- "trainable" (`TRAINABLE`): optimised as usual;
- "frozen" (`FROZEN`): no update, no optimiser state (`optax.set_to_zero`);
- "soft:<f>": optimised with its learning rate multiplied by f (mace-torch's soft
  freezing, `--lr_params_factors`).

The strings are the training engine's own (`jaxtl.train.TRAINABLE`, `FROZEN`), so a
label pytree goes straight into `make_optimizer(cfg, param_labels=labels,
label_transforms=lr_factor_transforms(labels))`, or into a plain
`optax.multi_transform(label_transforms(labels, optax.adam(1e-3)), labels)`.

Parameter groups (mace-torch's optimiser groups) are read off the top-level name:
`node_embedding` -> "embedding", `interactions_{t}` -> "interactions",
`products_{t}` -> "products", `readouts_{t}` -> "readouts"; anything else is
"other". Paths are '/'-joined keys, e.g. `interactions_1/conv_tp_weights/layer_0`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence

import jax
import optax

from jaxtl.model.config import MACEConfig
from jaxtl.train.optimizer import FROZEN, TRAINABLE

SOFT = "soft:"
GROUPS = ("embedding", "interactions", "products", "readouts")
_PREFIX = {
    "node_embedding": "embedding",
    "interactions": "interactions",
    "products": "products",
    "readouts": "readouts",
}
# mace-torch's --lr_params_factors keys.
LR_FACTOR_KEYS = {
    "embedding_lr_factor": "embedding",
    "interactions_lr_factor": "interactions",
    "products_lr_factor": "products",
    "readouts_lr_factor": "readouts",
}


# ---------------------------------------------------------------- paths and groups


def path_str(path) -> str:
    """'/'-joined keys of a `tree_flatten_with_path` path."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def group_of(path: str) -> str:
    """The parameter group of a path: embedding, interactions, products, readouts or other."""
    top = path.split("/", 1)[0]
    if top == "node_embedding":
        return "embedding"
    name, _, index = top.rpartition("_")
    if name in _PREFIX and index.isdigit():
        return _PREFIX[name]
    return "other"


def layer_of(path: str) -> int | None:
    """The layer index t of `interactions_t`/`products_t`/`readouts_t` paths, else None."""
    name, _, index = path.split("/", 1)[0].rpartition("_")
    return int(index) if name in ("interactions", "products", "readouts") and index.isdigit() else None


def map_paths(fn, params):
    """A pytree like `params` with `fn(path_str)` at every leaf."""
    return jax.tree_util.tree_map_with_path(lambda p, _: fn(path_str(p)), params)


def soft(factor: float) -> str:
    """The label of a leaf whose learning rate is multiplied by `factor`."""
    return f"{SOFT}{float(factor)!r}"


def soft_factor(label: str) -> float:
    """The lr factor of a label: 1 for trainable, 0 for frozen, f for "soft:f"."""
    if label == TRAINABLE:
        return 1.0
    if label == FROZEN:
        return 0.0
    if label.startswith(SOFT):
        return float(label[len(SOFT) :])
    raise ValueError(f"unknown label {label!r} (expected {TRAINABLE!r}, {FROZEN!r} or 'soft:<factor>')")


def _by_flag(params, frozen_fn) -> dict:
    return map_paths(lambda p: FROZEN if frozen_fn(p) else TRAINABLE, params)


# ---------------------------------------------------------------- --freeze N


def paper_children(config: MACEConfig) -> list[str]:
    """The child modules of the mace-torch model, in order, as the paper's fork counts them."""
    children = ["node_embedding", "radial_embedding"]
    if config.pair_repulsion:
        children.append("pair_repulsion_fn")
    children += ["spherical_harmonics", "atomic_energies_fn", "interactions", "products", "readouts"]
    if config.model_type == "ScaleShiftMACE":
        children.append("scale_shift")
    return children


_CHILD_GROUP = {
    "node_embedding": "embedding",
    "interactions": "interactions",
    "products": "products",
    "readouts": "readouts",
}


def frozen_groups(n: int | None, counting: str = "mace", config: MACEConfig | None = None) -> set[str]:
    """The parameter groups `--freeze n` freezes (see `freeze_labels`)."""
    if counting == "mace":
        if n is None or n <= 0:
            return set()  # upstream has no branch for n < 0: nothing is frozen
        groups = {"embedding"}
        if n >= 5:
            groups.add("interactions")
        if n >= 6:
            groups.add("products")
        if n >= 7:
            groups |= {"readouts", "other"}
        return groups
    if counting == "paper":
        if config is None:
            raise ValueError('counting="paper" needs the MACEConfig (the child list depends on pair_repulsion)')
        if not n:
            return set()
        children = paper_children(config)
        chosen = children[:n] if n > 0 else children[n:]
        return {_CHILD_GROUP[c] for c in chosen if c in _CHILD_GROUP}
    raise ValueError(f'counting must be "mace" or "paper", got {counting!r}')


def freeze_labels(params, n: int | None, counting: str = "mace", config: MACEConfig | None = None):
    """Labels of `--freeze n`.

    counting="mace" (upstream mace-torch >= 0.3.16, `get_params_options`), by name
    and cumulative:
        None or 0: nothing frozen;  1-4: node_embedding;  5: + every interaction
        block;  6: + every product block (only readouts train);  >= 7: everything.
        n < 0: nothing frozen -- upstream has no branch for negatives despite its
        help text; use counting="paper" for "freeze the last |n|".
    counting="paper" (the fork 7radians/mace-freeze used in arXiv 2502.15582):
        freeze the first n (n > 0) or last |n| (n < 0) child modules of the torch
        model, `paper_children(config)`: node_embedding, radial_embedding,
        [pair_repulsion_fn if ZBL], spherical_harmonics, atomic_energies_fn,
        interactions, products, readouts, [scale_shift]. Only node_embedding,
        interactions, products and readouts hold parameters here (Bessel weights
        and E0s are constants). Without ZBL n = 5, 6, 7 equal mace's; with ZBL
        the paper's n is mace's n - 1 (paper f6 == mace f5).
    """
    groups = frozen_groups(n, counting, config)
    return _by_flag(params, lambda p: group_of(p) in groups)


# ---------------------------------------------------------------- finer choices


def group_labels(params, freeze: Iterable[str] = (), train: Iterable[str] | None = None):
    """Freeze the listed groups (embedding, interactions, products, readouts), or, with
    `train`, train only the listed groups and freeze the rest."""
    freeze, train_set = set(freeze), None if train is None else set(train)
    for g in freeze | (train_set or set()):
        if g not in GROUPS + ("other",):
            raise ValueError(f"unknown parameter group {g!r}; groups are {GROUPS}")
    if train_set is not None:
        return _by_flag(params, lambda p: group_of(p) not in train_set or group_of(p) in freeze)
    return _by_flag(params, lambda p: group_of(p) in freeze)


def layer_labels(
    params,
    layers: Sequence[int],
    action: str = "freeze",
    groups: Iterable[str] = ("interactions", "products", "readouts"),
):
    """Per-layer choice over the blocks of `groups` (interactions_t, products_t, readouts_t).

    action="freeze": freeze layers `layers` of those groups, train everything else
        (e.g. layers=[0], groups=("interactions",): only `interactions_0` frozen).
    action="train": train only layers `layers` of those groups, freeze everything
        else (e.g. layers=[1], groups=("interactions",): only `interactions_1` trains).
    """
    layers, groups = set(int(t) for t in layers), set(groups)
    if action not in ("freeze", "train"):
        raise ValueError(f'action must be "freeze" or "train", got {action!r}')
    selected = lambda p: group_of(p) in groups and layer_of(p) in layers
    labels = _by_flag(params, selected if action == "freeze" else (lambda p: not selected(p)))
    if not any(selected(path_str(p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]):
        raise ValueError(f"no parameter belongs to layers {sorted(layers)} of {sorted(groups)}")
    return labels


def _matcher(pattern: str, syntax: str):
    if syntax == "regex":
        rx = re.compile(pattern)
        return lambda path: rx.search(path) is not None
    if syntax == "glob":
        # A glob matches a leaf or any subtree above it: "interactions_1" selects the block.
        def match(path: str) -> bool:
            parts = path.split("/")
            return any(fnmatch.fnmatchcase("/".join(parts[:k]), pattern) for k in range(1, len(parts) + 1))

        return match
    raise ValueError(f'syntax must be "glob" or "regex", got {syntax!r}')


def pattern_labels(params, freeze: Sequence[str] = (), train: Sequence[str] = (), syntax: str = "glob"):
    """Labels from patterns over '/'-joined paths.

    A leaf matching a `train` pattern trains; else one matching a `freeze` pattern is
    frozen; else it trains, unless only `train` patterns were given (then "train
    only these": everything else is frozen). syntax="glob" (fnmatch, matched against
    the path and each of its prefixes) or "regex" (`re.search`). A pattern that
    matches no parameter is an error (a typo would otherwise freeze nothing).
    """
    if isinstance(freeze, str) or isinstance(train, str):
        raise TypeError("freeze and train take a list of patterns")
    paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    freeze_m = [(_matcher(s, syntax), s) for s in freeze]
    train_m = [(_matcher(s, syntax), s) for s in train]
    for m, s in freeze_m + train_m:
        if not any(m(p) for p in paths):
            raise ValueError(f"pattern {s!r} ({syntax}) matches no parameter; paths look like {paths[0]!r}")
    default = FROZEN if train and not freeze else TRAINABLE

    def label(path: str) -> str:
        if any(m(path) for m, _ in train_m):
            return TRAINABLE
        if any(m(path) for m, _ in freeze_m):
            return FROZEN
        return default

    return map_paths(label, params)


def soft_labels(params, factors: Mapping[str, float], base=None):
    """Soft freezing: a learning-rate factor per group, on top of `base` labels.

    factors: mace-torch's `--lr_params_factors` keys (embedding_lr_factor,
        interactions_lr_factor, products_lr_factor, readouts_lr_factor) or group
        names; missing groups keep factor 1. Factor 0 freezes, 1 leaves as is.
    base: labels to refine (default: all trainable); frozen leaves stay frozen.
    """
    by_group = {}
    for key, f in factors.items():
        group = LR_FACTOR_KEYS.get(key, key)
        if group not in GROUPS:
            raise ValueError(f"unknown lr factor key {key!r}; use {sorted(LR_FACTOR_KEYS)} or {GROUPS}")
        if f < 0:
            raise ValueError(f"{key}: a learning-rate factor must be >= 0, got {f}")
        by_group[group] = float(f)
    if base is None:
        base = map_paths(lambda _: TRAINABLE, params)

    def refine(path, label):
        f = soft_factor(label) * by_group.get(group_of(path_str(path)), 1.0)
        return FROZEN if f == 0 else TRAINABLE if f == 1 else soft(f)

    return jax.tree_util.tree_map_with_path(refine, base)


# ---------------------------------------------------------------- optax


def label_transforms(labels, base: optax.GradientTransformation) -> dict:
    """label -> transformation for `optax.multi_transform(..., labels)`.

    frozen -> `optax.set_to_zero()` (no state); trainable -> `base`;
    "soft:f" -> `chain(base, scale(f))` (base's step times f, i.e. lr * f).
    """
    out = {}
    for label in set(jax.tree.leaves(labels)):
        f = soft_factor(label)
        out[label] = optax.set_to_zero() if label == FROZEN else base if f == 1 else optax.chain(base, optax.scale(f))
    return out


def lr_factor_transforms(labels) -> dict:
    """The `label_transforms` argument of `jaxtl.train.make_optimizer` for these labels
    (the engine handles trainable and frozen itself; soft labels scale its lr step)."""
    return {label: optax.scale(soft_factor(label)) for label in set(jax.tree.leaves(labels)) if label.startswith(SOFT)}
