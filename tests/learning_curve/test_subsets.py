"""Seeded nested subsets: prefixes of one permutation per seed, validation set apart."""

import itertools

import numpy as np

from jaxtl.learning_curve import split_pool


def test_subsets_nest_and_avoid_the_validation_set():
    split = split_pool(1200, 0.1, seed=1)
    assert len(split.valid) == 120 and len(split.order) == 1080
    fractions = (0.05, 0.1, 0.2, 0.5, 1.0)
    subsets = [set(split.subset(f).tolist()) for f in fractions]
    assert [len(s) for s in subsets] == [54, 108, 216, 540, 1080]
    for small, large in itertools.pairwise(subsets):
        assert small < large
    assert not subsets[-1] & set(split.valid.tolist())
    assert subsets[-1] | set(split.valid.tolist()) == set(range(1200))


def test_seeds_draw_other_subsets_and_repeat_themselves():
    a, b = split_pool(100, 0.2, seed=0), split_pool(100, 0.2, seed=1)
    assert not np.array_equal(a.subset(0.5), b.subset(0.5))
    assert not np.array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(split_pool(100, 0.2, seed=0).subset(0.5), a.subset(0.5))
