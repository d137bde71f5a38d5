"""Radial functions of the edge length: bases, envelope, distance transforms, MLP.

Pure functions of arrays; the numbers they use (Bessel frequencies, transform
parameters, covalent radii) come from the model's `constants` so that converted
models use their stored buffers verbatim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# e3nn-torch's `normalize2mom` constants (Monte-Carlo estimates, seed 0, 1e6 samples).
# They are part of every saved mace-torch model; these are the values it stores.
SILU_CST = 1.6791767923989418
SIGMOID_CST = 1.8467055342154763
TANH_CST = 1.5937334472592695


def polynomial_envelope(r: jnp.ndarray, r_max, p) -> jnp.ndarray:
    """mace's PolynomialCutoff u(r), exactly zero (value and gradient) for r >= r_max.

    r: [n_edges, 1] in A; r_max scalar or [n_edges, 1]; p the envelope power.
    """
    x = r / r_max
    env = (
        1.0 - ((p + 1.0) * (p + 2.0) / 2.0) * x**p + p * (p + 2.0) * x ** (p + 1) - (p * (p + 1.0) / 2.0) * x ** (p + 2)
    )
    return jnp.where(r < r_max, env, 0.0)


def bessel_basis(r: jnp.ndarray, frequencies: jnp.ndarray, prefactor) -> jnp.ndarray:
    """sqrt(2/r_max) sin(w_n r) / r. r: [n_edges, 1]; returns [n_edges, num_basis]."""
    return prefactor * jnp.sin(frequencies * r) / r


def gaussian_basis(r: jnp.ndarray, centres: jnp.ndarray, coeff: float) -> jnp.ndarray:
    """exp(coeff (r - mu_n)^2) with mu_n = linspace(0, r_max, N)."""
    return jnp.exp(coeff * (r - centres) ** 2)


def chebyshev_basis(r: jnp.ndarray, num_basis: int) -> jnp.ndarray:
    """T_n(r), n = 1..N, of the raw length (as mace-torch's ChebychevBasis).

    torch's `chebyshev_polynomial_t` has no derivative, so mace-torch's forces and
    stress silently omit dT_n/dr. To reproduce mace-torch the gradient is stopped
    here too: forces of chebyshev models are then not exactly -dE/dx (in both codes).
    """
    r = jax.lax.stop_gradient(r)
    terms = [jnp.ones_like(r), r]
    for _ in range(num_basis - 1):
        terms.append(2.0 * r * terms[-1] - terms[-2])
    return jnp.concatenate(terms[1 : num_basis + 1], axis=-1)


def agnesi_transform(r, r_cov_sender, r_cov_receiver, q, p, a):
    """Agnesi distance transform (ACEpotentials.jl); r and radii [n_edges, 1]."""
    x = r / (0.5 * (r_cov_sender + r_cov_receiver))
    return 1.0 / (1.0 + a * x**q / (1.0 + x ** (q - p)))


def soft_transform(r, r_cov_sender, r_cov_receiver, alpha):
    """mace's SoftTransform: a smooth clamp of short distances."""
    r0 = r_cov_sender + r_cov_receiver
    p0 = 0.75 * r0
    p1 = (4.0 / 3.0) * r0
    m = 0.5 * (p0 + p1)
    s = 0.5 * (1.0 + jnp.tanh(alpha / (p1 - p0) * (r - m)))
    return p0 + (r - p0) * s


def radial_mlp(layers: Sequence[jnp.ndarray], x: jnp.ndarray, act_cst: float = SILU_CST, split=None):
    """e3nn's FullyConnectedNet as a pure function of its weights [h_in, h_out] (see RadialMLP).

    x: [rows, h_0]; returns [rows, h_out]. split: widths of consecutive column blocks of
    the last layer (summing to h_out); the result is then a list of [rows, width]
    arrays, one matmul each, so that their gradients never meet in one concatenated
    [rows, h_out] array (a pass over memory of its own on the CPU).
    """
    for w in layers[:-1]:
        x = jax.nn.silu(x @ w.astype(x.dtype) / math.sqrt(w.shape[0])) * act_cst
    w = layers[-1].astype(x.dtype)
    if split is None:
        return x @ w / math.sqrt(w.shape[0])
    ends = np.cumsum(split)
    return [x @ w[:, end - width : end] / math.sqrt(w.shape[0]) for width, end in zip(split, ends)]


class RadialMLP(nn.Module):
    """e3nn's `FullyConnectedNet` as used for MACE's `conv_tp_weights`.

    Each layer is `x @ W / sqrt(h_in)` (W ~ N(0,1), no bias); hidden layers apply
    `silu(x) * SILU_CST`. Parameters are `layer_k` of shape `[h_in, h_out]`.
    `weights()` hands them out for `radial_mlp` to be applied inside the loops over
    edges (see `tensor_product.node_major_messages` and `chunked_messages`).
    """

    hidden: Sequence[int]  # [num_basis, *radial_MLP, weight_numel]
    act_cst: float = SILU_CST
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.layers = tuple(
            self.param(f"layer_{k}", nn.initializers.normal(1.0), (h_in, h_out), self.dtype)
            for k, (h_in, h_out) in enumerate(zip(self.hidden[:-1], self.hidden[1:]))
        )

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return radial_mlp(self.layers, x, self.act_cst)

    def weights(self) -> tuple[jnp.ndarray, ...]:
        return self.layers


class LayerNormMLP(nn.Module):
    """mace's `RadialMLP` (Linear with bias -> LayerNorm -> SiLU, ..., Linear).

    Used by `RealAgnosticResidualNonLinearInteractionBlock`; LayerNorm with torch's
    epsilon 1e-5 and two-pass variance.
    """

    hidden: Sequence[int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_layers = len(self.hidden) - 1
        for k, h_out in enumerate(self.hidden[1:]):
            x = nn.Dense(h_out, dtype=x.dtype, param_dtype=self.dtype, name=f"linear_{k}")(x)
            if k < n_layers - 1:
                x = nn.LayerNorm(
                    epsilon=1e-5,
                    use_fast_variance=False,
                    dtype=x.dtype,
                    param_dtype=self.dtype,
                    name=f"norm_{k}",
                )(x)
                x = jax.nn.silu(x)
        return x
