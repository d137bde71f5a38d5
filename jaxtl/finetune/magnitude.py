"""Magnitude adapters (MMEA-style, arXiv 2511.06696): a learnable scale per irrep and channel.

An `IrrepsLinear` (o3.Linear) keeps one weight `[mul_in, mul_out]` per output irrep;
multiplying its columns by `s [mul_out]` is exactly multiplying that irrep block of
the layer's output, channel by channel, by s -- a per-(l, channel) magnitude after
the layer, with no change to the model code. A scalar per channel of an irrep
commutes with rotations, so equivariance holds for any s. The scales start at 1,
so the adapted model starts exactly at the foundation.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from jaxtl.finetune.targets import adapter_blocks, leaves_by_path, nest, replace_leaves, select

# The message of every interaction and the new features of every product block.
DEFAULT_PATTERNS = ("interactions_*/linear/*", "products_*/linear/*")


def _default(path: str, shape: tuple) -> bool:
    parts = path.split("/")
    return (
        len(parts) == 3
        and parts[1] == "linear"
        and len(shape) == 2
        and (parts[0].startswith("interactions_") or parts[0].startswith("products_"))
    )


@dataclasses.dataclass(frozen=True)
class Magnitude:
    """Per-output-channel scales `W[..., :, c] * s[c]` on chosen linear weights.

    Attributes:
        patterns: globs over parameter paths (None: `DEFAULT_PATTERNS`, the
            interaction `linear` and product `linear` blocks, i.e. each layer's
            message and product features, every irrep). A pattern that matches
            nothing is an error.
    """

    patterns: tuple[str, ...] | None = None
    kind: ClassVar[str] = "magnitude"

    def __post_init__(self):
        if self.patterns is not None:
            object.__setattr__(self, "patterns", tuple(self.patterns))

    def targets(self, params) -> list[str]:
        chosen = select(params, self.patterns, _default, "adapter")
        flat = leaves_by_path(params)
        for path in chosen:
            if np.ndim(flat[path]) < 1:
                raise ValueError(f"a magnitude adapter needs an output axis, but {path!r} is a scalar")
        return chosen

    def skipped(self, params) -> list[tuple[str, tuple]]:
        return []

    def init(self, params, seed: int = 0) -> dict:
        """Nested {path: {"scale": ones [d_out]}}, numpy, dtype of the weight."""
        del seed
        flat = leaves_by_path(params)
        targets = self.targets(params)
        if not targets:
            raise ValueError("no weight to put a magnitude adapter on")
        return nest({p + "/scale": np.ones(flat[p].shape[-1], np.asarray(flat[p]).dtype) for p in targets})

    def apply(self, params, adapters: dict):
        """The weights the model uses: `W * scale` along the output axis (jit-able)."""
        flat = leaves_by_path(params)
        new = {
            path: flat[path] * f["scale"].astype(flat[path].dtype)
            for path, f in adapter_blocks(adapters, ("scale",)).items()
        }
        return replace_leaves(params, new)

    def describe(self, params) -> list[tuple[str, tuple, int]]:
        flat = leaves_by_path(params)
        return [(p, tuple(flat[p].shape), int(flat[p].shape[-1])) for p in self.targets(params)]
