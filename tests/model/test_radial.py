"""The radial MLP as a pure function: its last layer split by path gives the same weights."""

import numpy as np


def test_radial_mlp_split_last_layer_equals_whole():
    import jax

    from jaxtl.model.radial import radial_mlp

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=s) for s in ((8, 16), (16, 16), (16, 40))]
    x = rng.normal(size=(5, 8))
    whole = np.asarray(radial_mlp(layers, x))
    pieces = radial_mlp(layers, x, split=[8, 24, 8])
    assert [p.shape for p in pieces] == [(5, 8), (5, 24), (5, 8)]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=1e-13, atol=1e-13)
    assert np.abs(whole).max() > 1.0
