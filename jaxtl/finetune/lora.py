"""LoRA for equivariant layers: W = W0 + (alpha / rank) A B on chosen weights.

Every weight of an `IrrepsLinear` (o3.Linear) block is `[mul_in, mul_out]` and mixes
channels of one irrep, the same matrix for all 2l+1 components; a low-rank update
of it is again such a matrix, so the model stays equivariant whatever A and B are.
Radial-MLP and readout-MLP layers act on scalars, so any update is allowed there.
Element-dependent weights `[n_elements, mul_in, mul_out]` (skip_tp, symmetric
contraction) get one pair of factors per element when chosen by pattern: the
factors carry the leading axes, `A [..., d_in, rank]`, `B [..., rank, d_out]`.

B starts at zero, so the adapted model starts exactly at the foundation (W0 + 0 is
W0 bit for bit). A ~ N(0, 1/rank): an Adam step of size lr on B then moves W by
about (alpha/rank) lr per entry, as full fine-tuning moves it by lr.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from jaxtl.finetune.targets import adapter_blocks, leaves_by_path, nest, replace_leaves, select


def is_lora_default(path: str, shape: tuple) -> bool:
    """The default LoRA targets: every 2-D weight (o3.Linear blocks, radial and readout MLP
    layers), not element embeddings (a table of per-element vectors, not a map)."""
    return len(shape) == 2 and not path.endswith("embeddings")


@dataclasses.dataclass(frozen=True)
class LoRA:
    """Low-rank adapters `W = W0 + (alpha / rank) A B`.

    Attributes:
        rank: r, the inner dimension of A [d_in, r] and B [r, d_out].
        alpha: scale numerator (None: alpha = rank, i.e. a scale of 1).
        patterns: globs over parameter paths choosing the weights (None: every
            2-D weight whose dimensions are at least `rank`; smaller ones, such as
            the single-output readout layers, are left as they are and listed by
            `skipped`). A chosen pattern that matches nothing, a weight that is not
            a matrix, or a rank above a chosen weight's dimensions is an error.
    """

    rank: int = 4
    alpha: float | None = None
    patterns: tuple[str, ...] | None = None
    kind: ClassVar[str] = "lora"

    def __post_init__(self):
        if not isinstance(self.rank, (int, np.integer)) or self.rank < 1:
            raise ValueError(f"LoRA rank must be a positive integer, got {self.rank!r}")
        if self.patterns is not None:
            object.__setattr__(self, "patterns", tuple(self.patterns))

    @property
    def scale(self) -> float:
        return float(self.rank if self.alpha is None else self.alpha) / self.rank

    def _fits(self, shape: tuple) -> bool:
        return len(shape) >= 2 and min(shape[-2:]) >= self.rank

    def targets(self, params) -> list[str]:
        """Paths of the weights that get adapters."""
        if self.patterns is None:
            return select(params, None, lambda p, s: is_lora_default(p, s) and self._fits(s), "adapter")
        chosen = select(params, self.patterns, is_lora_default, "adapter")
        flat = leaves_by_path(params)
        for path in chosen:
            shape = tuple(flat[path].shape)
            if len(shape) < 2:
                raise ValueError(
                    f"LoRA needs a matrix, but {path!r} has shape {shape}; "
                    "choose weights with --adapter-patterns that are matrices"
                )
            if not self._fits(shape):
                raise ValueError(
                    f"LoRA rank {self.rank} is larger than the dimensions {shape[-2:]} of "
                    f"{path!r}; use a rank <= {min(shape[-2:])} or leave it out of the patterns"
                )
        return chosen

    def skipped(self, params) -> list[tuple[str, tuple]]:
        """Default targets too small for the rank: (path, shape), left unadapted."""
        if self.patterns is not None:
            return []
        return [
            (p, tuple(x.shape))
            for p, x in leaves_by_path(params).items()
            if is_lora_default(p, tuple(x.shape)) and not self._fits(tuple(x.shape))
        ]

    def init(self, params, seed: int = 0) -> dict:
        """Nested {path: {"A": [..., d_in, r], "B": [..., r, d_out] zeros}}, numpy, dtype of W0."""
        flat = leaves_by_path(params)
        targets = self.targets(params)
        if not targets:
            raise ValueError(f"no weight has both dimensions >= LoRA rank {self.rank}")
        rng = np.random.default_rng(seed)
        out = {}
        for path in targets:
            w = np.asarray(flat[path])
            *lead, d_in, d_out = w.shape
            a = rng.normal(0.0, 1.0 / np.sqrt(self.rank), size=(*lead, d_in, self.rank))
            out[path + "/A"] = a.astype(w.dtype)
            out[path + "/B"] = np.zeros((*lead, self.rank, d_out), w.dtype)
        return nest(out)

    def apply(self, params, adapters: dict):
        """The weights the model uses: `W0 + scale * A @ B` at every adapted path (jit-able)."""
        flat = leaves_by_path(params)
        new = {}
        for path, f in adapter_blocks(adapters, ("A", "B")).items():
            w0 = flat[path]
            new[path] = w0 + (self.scale * jnp.matmul(f["A"], f["B"])).astype(w0.dtype)
        return replace_leaves(params, new)

    def describe(self, params) -> list[tuple[str, tuple, int]]:
        """(path, W0 shape, adapter parameters) of every adapted weight."""
        flat = leaves_by_path(params)
        rows = []
        for path in self.targets(params):
            *lead, d_in, d_out = flat[path].shape
            n = int(np.prod(lead, dtype=np.int64)) * self.rank * (d_in + d_out)
            rows.append((path, tuple(flat[path].shape), n))
        return rows
