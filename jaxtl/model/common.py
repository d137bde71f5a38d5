"""Helpers the model's equivariant blocks share (the XLA blocks and the cuEquivariance
backend alike): Clebsch-Gordan tables, tensor-product paths, monomial tables and
splitting of arrays into pieces and edge chunks.

Kept below `tensor_product`, `product` and `cueq`, so that each of them imports from
here and none from another's module.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import NamedTuple

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np


class TPPath(NamedTuple):
    """One path of the convolution tensor product: edge irrep `i_in` x harmonic l_sh -> (l_out, p_out)."""

    i_in: int  # index into edge irreps
    l_sh: int  # spherical harmonic degree
    mul: int
    l_out: int
    p_out: int


@functools.cache
def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """e3nn's real Clebsch-Gordan coefficients [2l1+1, 2l2+1, 2l3+1] (as numpy)."""
    return np.asarray(e3nn.clebsch_gordan(l1, l2, l3))


def conv_clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """`clebsch_gordan` for a convolution path, where l1 + l2 + l3 must be even.

    e3nn-jax and e3nn-torch differ in sign for some odd triples; natural-parity models
    never need them in the convolution (parity selection), so refuse rather than guess.
    The symmetric contraction builds its own tables (`product.coupling_basis`) and may
    use odd triples.
    """
    if (l1 + l2 + l3) % 2:
        raise NotImplementedError(f"odd Clebsch-Gordan path ({l1}, {l2}, {l3}) is not supported")
    return clebsch_gordan(l1, l2, l3)


@functools.cache
def monomials(dim: int, nu: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted index tuples of degree nu over `dim` variables.

    Returns (indices [n_mono, nu], monomial id of every full tuple [dim**nu]).
    """
    combos = list(itertools.combinations_with_replacement(range(dim), nu))
    lookup = {c: m for m, c in enumerate(combos)}
    full = np.array([lookup[tuple(sorted(t))] for t in itertools.product(range(dim), repeat=nu)], np.int32)
    return np.array(combos, np.int32).reshape(len(combos), nu), full


def split_pieces(a: jnp.ndarray, sizes: Sequence[int], axis: int) -> list[jnp.ndarray]:
    """`a` cut along `axis` into consecutive pieces of `sizes` (which sum to its length).

    `lax.split`, whose transpose is a concatenate: the gradient of a tensor used in
    pieces is then written once, where the transposes of slices are zero-padded
    copies that XLA sums in one loop evaluating every pad for every element.
    """
    return list(jax.lax.split(a, tuple(sizes), axis=axis))


def split_edges(per_edge, chunk: int):
    """A pytree of per-edge arrays [n_edges, ...] -> [n_chunks, chunk, ...], zero-padded, plus a
    mask [n_chunks, chunk] of the real edges (1) and the padding (0), for a scan over chunks."""
    n_edges = jax.tree_util.tree_leaves(per_edge)[0].shape[0]
    n_chunks = -(-n_edges // chunk)
    pad = n_chunks * chunk - n_edges

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(n_chunks, chunk, *a.shape[1:])

    return jax.tree_util.tree_map(split, per_edge), split(jnp.ones((n_edges,), jnp.int8))
