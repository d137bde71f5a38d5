"""MACE's product basis: the element-dependent symmetric contraction.

For each output irrep L (one `Contraction` in mace-torch) and node n, channel c:

    B[n, c, M] = sum_nu sum_k W_nu[z_n, k, c] sum_{i_1..i_nu} U_nu[M, i_1..i_nu, k] prod_j x[n, c, i_j]

with the coupling tensors `U_nu` taken verbatim from the saved model, or, for
models built in jaxtl, made by the same recursion as mace-torch's `_wigner_nj`. Because the product of features is symmetric in (i_1..i_nu), U is first
summed over permutations onto the monomials i_1 <= ... <= i_nu (816 instead of
4096 terms for nu = 3, D = 16); the contraction is then one matmul per nu.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Sequence

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model.irreps import IrrepsSpec, ir_str


@functools.lru_cache(maxsize=None)
def monomials(dim: int, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index tuples of degree nu over `dim` variables.

    Returns (indices [n_mono, nu], monomial id of every full tuple [dim**nu]).
    """
    combos = list(itertools.combinations_with_replacement(range(dim), nu))
    lookup = {c: m for m, c in enumerate(combos)}
    full = np.array([lookup[tuple(sorted(t))] for t in itertools.product(range(dim), repeat=nu)], np.int32)
    return np.array(combos, np.int32).reshape(len(combos), nu), full


def symmetrize_U(U: jnp.ndarray, dim: int, nu: int) -> jnp.ndarray:
    """U [M, dim^nu..., K] -> U_sym [n_mono, M, K] summed over index permutations."""
    _, full = monomials(dim, nu)
    n_mono = int(full.max()) + 1
    M, K = U.shape[0], U.shape[-1]
    flat = U.reshape(M, dim**nu, K).transpose(1, 0, 2)
    return jax.ops.segment_sum(flat, jnp.asarray(full), num_segments=n_mono)


@functools.lru_cache(maxsize=None)
def _selectors(dim: int, nu: int) -> np.ndarray:
    """One-hot matrices [nu, dim, n_mono] picking the j-th factor of every monomial."""
    idx, _ = monomials(dim, nu)
    sel = np.zeros((nu, dim, len(idx)))
    for j in range(nu):
        sel[j, idx[:, j], np.arange(len(idx))] = 1.0
    return sel


def feature_monomials(x: jnp.ndarray, nu: int) -> jnp.ndarray:
    """x [n, c, dim] -> products prod_j x[..., i_j] over sorted tuples, [n, c, n_mono].

    The factors are picked with one-hot matmuls rather than gathers: their
    transposes (needed for forces and for training) are matmuls too, where a
    gather's transpose is a slow scatter on CPU.
    """
    sel = jnp.asarray(_selectors(x.shape[-1], nu), x.dtype)
    out = x @ sel[0]
    for j in range(1, nu):
        out = out * (x @ sel[j])
    return out


@functools.lru_cache(maxsize=None)
def _cg(l1: int, l2: int, l3: int) -> np.ndarray:
    return np.asarray(e3nn.clebsch_gordan(l1, l2, l3))


@functools.lru_cache(maxsize=None)
def coupling_basis(coupling_irreps: IrrepsSpec, l: int, p: int, nu: int) -> np.ndarray:
    """MACE's coupling tensors U [2l+1, D^nu..., K] for models built in jaxtl.

    The same recursion as mace-torch's `_wigner_nj`: couple nu copies of the
    coupling irreps one at a time with Clebsch-Gordan coefficients (scaled by
    sqrt(2 l_out + 1)), keeping every path that ends in (l, p). The basis is
    over-complete like mace-torch's (K = 1, 4, 23 for L = 0 and 0e+1o+2e+3o), so a
    jaxtl-built model has mace-torch's parameter shapes.
    """
    irreps = [(li, pi) for _, li, pi in coupling_irreps]
    dim = sum(2 * li + 1 for li, _ in irreps)
    selectors, offset = [], 0
    for li, _ in irreps:
        sel = np.zeros((dim, 2 * li + 1))
        sel[offset : offset + 2 * li + 1] = np.eye(2 * li + 1)
        selectors.append(sel)
        offset += 2 * li + 1
    paths = [(li, pi, sel) for (li, pi), sel in zip(irreps, selectors)]
    for _ in range(nu - 1):
        new = []
        for l_left, p_left, U_left in paths:
            for (li, pi), sel in zip(irreps, selectors):
                for l_out in range(abs(l_left - li), l_left + li + 1):
                    cg = _cg(l_left, li, l_out) * math.sqrt(2 * l_out + 1)
                    U = np.einsum("...a,ib,abc->...ic", U_left, sel, cg)
                    new.append((l_out, p_left * pi, U))
        paths = new
    kept = [U for lo, po, U in paths if (lo, po) == (l, p)]
    if not kept:
        return np.zeros((2 * l + 1,) + (dim,) * nu + (0,))
    return np.moveaxis(np.stack(kept, axis=-1), -2, 0)


class Contraction(nn.Module):
    """One output irrep (l, p) of the symmetric contraction.

    Constants `U_nu` ([2l+1, D^nu..., K_nu], the leading axis absent for l = 0 as
    in mace-torch); parameters `weights_nu` [num_elements, K_nu, channels].
    """

    coupling_irreps: IrrepsSpec
    l: int
    p: int
    correlation: int
    num_elements: int
    channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, species: jnp.ndarray) -> jnp.ndarray:
        """x: [n, channels, D]; species: [n]. Returns [n, channels, 2l+1]."""
        dim = x.shape[-1]
        out = 0.0
        for nu in range(self.correlation, 0, -1):
            U = self.variable(
                "constants",
                f"U_{nu}",
                lambda nu=nu: jnp.asarray(self._fresh_U(nu)),
            ).value
            U = jnp.asarray(U)
            if self.l == 0 and U.ndim == nu + 1:
                U = U[None]
            K = U.shape[-1]
            W = self.param(
                f"weights_{nu}",
                lambda key, shape, dtype, K=K: jax.random.normal(key, shape, dtype) / K,
                (self.num_elements, K, self.channels),
                self.dtype,
            )
            U_sym = symmetrize_U(U.astype(x.dtype), dim, nu)  # [n_mono, M, K]
            P = feature_monomials(x, nu)  # [n, c, n_mono]
            Q = jnp.einsum("ncm,mMk->ncMk", P, U_sym)
            W_nodes = jnp.swapaxes(W[species].astype(x.dtype), 1, 2)  # [n, c, K]
            out = out + jnp.sum(Q * W_nodes[:, :, None, :], axis=-1)
        return out

    def _fresh_U(self, nu: int) -> np.ndarray:
        U = coupling_basis(self.coupling_irreps, self.l, self.p, nu)
        return U[0] if self.l == 0 else U


class SymmetricContraction(nn.Module):
    """All output irreps; returns blocks [n, channels, 2l+1] over `irreps_out`."""

    coupling_irreps: IrrepsSpec
    irreps_out: IrrepsSpec
    correlation: int
    num_elements: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, species: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
        return tuple(
            Contraction(
                self.coupling_irreps, l, p, self.correlation, self.num_elements, mul, self.dtype,
                name=f"contraction_{ir_str(l, p)}",
            )(x, species)
            for mul, l, p in self.irreps_out
        )


def contraction_flops(n_nodes: int, channels: int, dim: int, Ks: Sequence[int], M: int) -> int:
    """Multiply-adds of one contraction (for benchmarks)."""
    return sum(
        n_nodes * channels * (math.comb(dim + nu - 1, nu) * (M * K + nu) + M * K)
        for nu, K in enumerate(Ks, start=1)
    )
