"""The neighbour sum of the message products against a plain broadcast, with its derivatives."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model.tensor_product import neighbour_sum

jax.config.update("jax_enable_x64", True)


def plain_neighbour_sum(sh, w, x):
    """The same sum by broadcasting, differentiated by jax: [n, b, p * a * c]."""
    n, K, _ = sh.shape
    wx = jnp.stack(w, axis=1)[:, :, None, :] * x[:, None]  # [n * K, p, a, c]
    return jnp.einsum("nkb,nkpac->nbpac", sh, wx.reshape(n, K, *wx.shape[1:])).reshape(n, sh.shape[-1], -1)


def inputs(n=3, K=4, b=5, paths=2, dims=3, mul=6, seed=0):
    rng = np.random.default_rng(seed)
    sh = jnp.asarray(rng.normal(size=(n, K, b)))
    w = tuple(jnp.asarray(rng.normal(size=(n * K, mul))) for _ in range(paths))
    x = jnp.asarray(rng.normal(size=(n * K, dims, mul)))
    return sh, w, x


def test_neighbour_sum_value_and_gradients_match_autodiff():
    for paths, dims in ((2, 3), (1, 1), (1, 5)):
        sh, w, x = inputs(paths=paths, dims=dims)
        g = jnp.asarray(np.random.default_rng(1).normal(size=plain_neighbour_sum(sh, w, x).shape))
        np.testing.assert_allclose(neighbour_sum(sh, w, x), plain_neighbour_sum(sh, w, x), rtol=1e-12)
        ours = jax.vjp(neighbour_sum, sh, w, x)[1](g)
        theirs = jax.vjp(plain_neighbour_sum, sh, w, x)[1](g)
        for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_neighbour_sum_second_derivative_matches_autodiff():
    """Training differentiates the forces: second derivatives through the row products."""
    sh, w, x = inputs()

    def force_like(f):
        def loss(w):  # a function of d(sum f)/d(sh), as a force loss of the weights
            return jnp.sum(jax.grad(lambda sh: jnp.sum(jnp.sin(f(sh, w, x))))(sh) ** 2)

        return jax.grad(loss)(w)

    for a, b in zip(force_like(neighbour_sum), force_like(plain_neighbour_sum)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_slot_sums_are_each_others_gradients_to_third_order():
    """slot_sum, _spread and _sh_gradient (custom VJPs of one another) against einsum:
    values and derivatives of orders 1-3, including one harmonic component and one slot."""
    from jaxtl.model.tensor_product import _sh_gradient, _spread, slot_sum

    plain = {
        slot_sum: ("nkb,nkq->nbq", lambda n, K, b, q: ((n, K, b), (n, K, q))),
        _spread: ("nkb,nbq->nkq", lambda n, K, b, q: ((n, K, b), (n, b, q))),
        _sh_gradient: ("nbq,nkq->nkb", lambda n, K, b, q: ((n, b, q), (n, K, q))),
    }

    def derivative(f):  # a scalar of the gradient of a scalar of f: one order higher
        return lambda a, b: jnp.sum(jnp.cos(jnp.concatenate([g.ravel() for g in jax.grad(f, (0, 1))(a, b)])))

    rng = np.random.default_rng(2)
    for dims in ((3, 4, 5, 6), (2, 1, 1, 3), (2, 3, 1, 1)):
        for fn, (spec, shapes) in plain.items():
            a, b = (jnp.asarray(rng.normal(size=s)) for s in shapes(*dims))
            ours = lambda a, b, fn=fn: jnp.sum(jnp.sin(fn(a, b)))  # noqa: E731
            theirs = lambda a, b, spec=spec: jnp.sum(jnp.sin(jnp.einsum(spec, a, b)))  # noqa: E731
            for _ in range(4):
                np.testing.assert_allclose(ours(a, b), theirs(a, b), rtol=1e-10, atol=1e-10)
                ours, theirs = derivative(ours), derivative(theirs)


def test_slim_models_take_more_slots_a_step():
    from jaxtl.model.tensor_product import NODE_MAJOR_BYTES, NODE_MAJOR_SLOTS, conv_tp_paths, node_major_slots

    sh = [(1, l, (-1) ** l) for l in range(4)]  # max_ell 3; targets as mace's: the harmonics' irreps

    def slots(node_irreps, dtype):
        blocks = [jnp.zeros((1, mul, 2 * l + 1), dtype) for mul, l, _ in node_irreps]
        paths = conv_tp_paths(node_irreps, sh, sh)
        return node_major_slots(blocks, paths), sum(t.mul * (2 * node_irreps[t.i_in][1] + 1) for t in paths)

    slim, width = slots([(16, 0, 1)], jnp.float64)  # the H2/Cu MACE: 4 paths of 16 scalars
    assert width == 64 and slim == NODE_MAJOR_BYTES // (64 * 8) > NODE_MAJOR_SLOTS
    wide, width = slots([(128, 0, 1), (128, 1, -1)], jnp.float32)  # MP-0 medium's second layer
    assert width == 2816 and wide == NODE_MAJOR_SLOTS
