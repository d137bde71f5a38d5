"""Which weights a reparametrisation touches: glob patterns over parameter paths.

Adapters live in a nested dict that mirrors the parameter tree, so a LoRA factor of
`interactions_0/linear/1o` has the path `interactions_0/linear/1o/A`. Helpers here
turn between '/'-joined paths and such nested dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
from flax import traverse_util

from jaxtl.finetune.freeze import _matcher, path_str


def leaves_by_path(params) -> dict:
    """{'/'-joined path: leaf} of a parameter tree, in tree order."""
    return {path_str(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}


def select(params, patterns: Sequence[str] | None, default: Callable[[str, tuple], bool], what: str) -> list[str]:
    """Paths of the leaves chosen by glob `patterns` (or by `default(path, shape)` when None).

    A glob matches a leaf or any subtree above it ("interactions_1" selects the
    whole block), as in `pattern_labels`. A pattern that matches nothing is an error.
    """
    flat = leaves_by_path(params)
    if patterns is None:
        return [p for p, x in flat.items() if default(p, tuple(x.shape))]
    if isinstance(patterns, str):
        raise TypeError(f"{what} patterns take a list of globs, got the string {patterns!r}")
    chosen = []
    for pattern in patterns:
        match = _matcher(pattern, "glob")
        hits = [p for p in flat if match(p)]
        if not hits:
            raise ValueError(f"{what} pattern {pattern!r} matches no parameter; paths look like {next(iter(flat))!r}")
        chosen += [p for p in hits if p not in chosen]
    return [p for p in flat if p in chosen]  # tree order


def nest(flat: dict) -> dict:
    """{'a/b/c': x} -> {'a': {'b': {'c': x}}}."""
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def flatten(tree: dict) -> dict:
    """{'a': {'b': {'c': x}}} -> {'a/b/c': x}."""
    return {"/".join(k): v for k, v in traverse_util.flatten_dict(tree).items()}


def adapter_blocks(adapters: dict, leaf_names: Sequence[str]) -> dict:
    """{weight path: {leaf name: array}} from a nested adapter dict whose blocks end in `leaf_names`."""
    blocks: dict = {}
    for path, x in flatten(adapters).items():
        weight, _, name = path.rpartition("/")
        if name not in leaf_names:
            raise ValueError(f"unexpected adapter leaf {path!r} (expected names {tuple(leaf_names)})")
        blocks.setdefault(weight, {})[name] = x
    return blocks


def replace_leaves(params, new: dict):
    """`params` with the leaves at the '/'-joined paths of `new` replaced."""
    flat = traverse_util.flatten_dict(params)
    for path, x in new.items():
        key = tuple(path.split("/"))
        if key not in flat:
            raise KeyError(f"no parameter {path!r} to reparametrise")
        flat[key] = x
    return traverse_util.unflatten_dict(flat)
