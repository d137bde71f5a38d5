"""The dry run: which parameters train, how many, and the optimiser memory freezing saves."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import jax
import numpy as np

from jaxtl.finetune.freeze import FROZEN, TRAINABLE, group_of, path_str


@dataclasses.dataclass(frozen=True)
class FreezeReport:
    """What a label pytree does to a parameter tree.

    Attributes:
        leaves: (path, shape, size, label) of every leaf, in tree order.
        by_label: label -> number of scalar parameters.
        by_group: group -> label -> number of scalar parameters.
        moments: optimiser-state arrays kept per trainable leaf (Adam mu, nu: 2;
            torch-style AMSGrad adds nu_max: 3).
        state_bytes_saved: optimiser-state bytes not allocated for frozen leaves
            (moments x frozen bytes), or the measured difference when the report
            was given an optimiser.
        state_bytes_full: the same optimiser's state with nothing frozen.
    """

    leaves: tuple
    by_label: dict
    by_group: dict
    moments: int
    state_bytes_saved: int
    state_bytes_full: int

    @property
    def n_params(self) -> int:
        return sum(self.by_label.values())

    @property
    def n_frozen(self) -> int:
        return self.by_label.get(FROZEN, 0)

    @property
    def n_trainable(self) -> int:
        return self.n_params - self.n_frozen

    def frozen_paths(self) -> list[str]:
        return [p for p, _, _, label in self.leaves if label == FROZEN]

    def trainable_paths(self) -> list[str]:
        return [p for p, _, _, label in self.leaves if label != FROZEN]

    def __str__(self) -> str:
        lines = [f"{'parameter':58s} {'shape':>14s} {'size':>9s}  label"]
        for path, shape, size, label in self.leaves:
            lines.append(f"{path:58s} {str(tuple(shape)):>14s} {size:9d}  {label}")
        lines.append("")
        lines.append(f"{'group':14s} " + " ".join(f"{k:>12s}" for k in sorted(self.by_label)))
        for group, counts in self.by_group.items():
            lines.append(f"{group:14s} " + " ".join(f"{counts.get(k, 0):12d}" for k in sorted(self.by_label)))
        lines.append(f"{'total':14s} " + " ".join(f"{self.by_label[k]:12d}" for k in sorted(self.by_label)))
        share = self.n_trainable / max(self.n_params, 1)
        lines.append(
            f"trainable {self.n_trainable} of {self.n_params} parameters ({100 * share:.1f} %), frozen {self.n_frozen}"
        )
        lines.append(
            f"optimiser state: {self.state_bytes_full - self.state_bytes_saved} bytes "
            f"instead of {self.state_bytes_full} ({self.state_bytes_saved} bytes saved)"
        )
        return "\n".join(lines)


def _nbytes(tree) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def describe(params, labels, optimizer=None, moments: int = 2, group=group_of) -> FreezeReport:
    """A dry-run report of `labels` over `params`.

    optimizer: optional; either a function `labels -> optax transformation` (e.g.
        `lambda l: make_optimizer(cfg, param_labels=l, ...)`) whose state is sized
        with and without the labels by `jax.eval_shape` (exact), or None for the
        nominal Adam count (`moments` arrays per trainable leaf).
    group: path -> parameter group (default `group_of`; strategies map their
        {"base", "adapters"} paths back to the foundation's groups).
    """
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    flat_labels = jax.tree.leaves(labels)
    if len(flat) != len(flat_labels):
        raise ValueError(f"labels have {len(flat_labels)} leaves, params {len(flat)}")
    leaves, by_label, by_group = [], defaultdict(int), defaultdict(lambda: defaultdict(int))
    frozen_bytes = full_bytes = 0
    for (path, x), label in zip(flat, flat_labels):
        p, size = path_str(path), int(np.prod(np.shape(x), dtype=np.int64))
        leaves.append((p, tuple(np.shape(x)), size, label))
        by_label[label] += size
        by_group[group(p)][label] += size
        nbytes = size * np.dtype(x.dtype).itemsize
        full_bytes += nbytes
        frozen_bytes += nbytes if label == FROZEN else 0
    if optimizer is None:
        saved, full = moments * frozen_bytes, moments * full_bytes
    else:
        all_trainable = jax.tree.map(lambda _: TRAINABLE, labels)
        full = _nbytes(jax.eval_shape(optimizer(all_trainable).init, params))
        saved = full - _nbytes(jax.eval_shape(optimizer(labels).init, params))
    return FreezeReport(
        tuple(leaves), dict(by_label), {g: dict(c) for g, c in by_group.items()}, moments, int(saved), int(full)
    )
