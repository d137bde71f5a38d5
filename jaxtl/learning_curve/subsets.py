"""Seeded, nested training subsets of a pool.

For seed s, one permutation of the pool: its first `n_valid` structures are the
validation set (the same for every fraction and strategy of that seed), the rest,
in permuted order, is the training order, and the subset of fraction f is its
prefix of `subset_size(f)` structures. Prefixes nest, so the 10 % subset holds the
5 % one, and the curves of one seed compare like with like.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """Indices into the pool of one seed.

    Attributes:
        valid: [n_valid] validation structures.
        order: [n_pool - n_valid] the training part, in the seed's order (subsets are prefixes).
    """

    valid: np.ndarray
    order: np.ndarray

    def subset_size(self, fraction: float) -> int:
        """Structures of the `fraction` subset (at least one)."""
        return max(1, round(fraction * len(self.order)))

    def subset(self, fraction: float) -> np.ndarray:
        """[subset_size(fraction)] pool indices of the training subset, sorted."""
        return np.sort(self.order[: self.subset_size(fraction)])


def split_pool(n_pool: int, valid_fraction: float, seed: int) -> Split:
    """The validation set and training order of `seed` over a pool of `n_pool` structures."""
    if n_pool < 2:
        raise ValueError(f"a pool of {n_pool} structures cannot give both training and validation structures")
    permutation = np.random.default_rng(seed).permutation(n_pool)
    n_valid = min(n_pool - 1, max(1, round(valid_fraction * n_pool)))
    return Split(np.sort(permutation[:n_valid]), permutation[n_valid:])
