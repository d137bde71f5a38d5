"""MACE's product basis: the element-dependent symmetric contraction.

For each output irrep L (one `Contraction` in mace-torch) and node n, channel c:

    B[n, c, M] = sum_nu sum_k W_nu[z_n, k, c] sum_{i_1..i_nu} U_nu[M, i_1..i_nu, k] prod_j x[n, c, i_j]

with the coupling tensors `U_nu` taken verbatim from the saved model, or, for
models built in jaxtl, made by the same recursion as mace-torch's `_wigner_nj`.
What is computed is mace-torch's; how differs in three ways:

* the product of features is symmetric in (i_1..i_nu), so U is summed over
  permutations onto the monomials i_1 <= ... <= i_nu (816 instead of 4096 terms
  for nu = 3, D = 16);
* of those, only the monomials that U couples to L at all are formed (selection
  rules: 77 of 816 for L = 0, 278 for L = 1);
* U is contracted with the element weights first, for the elements present,
  giving per-element tables T[m, M, c]; a node then needs sum_m P[m] T[m, M] per
  channel instead of sum_m sum_k P[m] U[m, M, k] W[k] (K = 23 to 51 times fewer
  operations; mace-torch contracts U with the features first).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.graph.graph import ELEMENT_SLOTS
from jaxtl.model import cueq
from jaxtl.model.common import clebsch_gordan, monomials
from jaxtl.model.irreps import IrrepsSpec, ir_str
from jaxtl.model.tensor_product import backend_chunk, even_chunks


@functools.cache
def _permutation_table(dim: int, nu: int, keep: tuple[int, ...] | None) -> np.ndarray:
    """Flat indices into U's dim**nu axis of every distinct permutation of each kept monomial.

    [n_kept, nu!], padded with dim**nu (a zero row appended to U).
    """
    idx, _ = monomials(dim, nu)
    rows = range(len(idx)) if keep is None else keep
    table = np.full((len(rows), math.factorial(nu)), dim**nu, np.int32)
    weights = dim ** np.arange(nu - 1, -1, -1)
    for r, m in enumerate(rows):
        perms = sorted(set(itertools.permutations(idx[m].tolist())))
        table[r, : len(perms)] = [int(np.dot(q, weights)) for q in perms]
    return table


def symmetrize_U(U: jnp.ndarray, dim: int, nu: int, keep: tuple[int, ...] | None = None) -> jnp.ndarray:
    """U [M, dim^nu..., K] -> U_sym [n_mono, M, K] summed over index permutations.

    With `keep` (monomial ids), only those rows. A gather of at most nu! rows per
    monomial rather than a scatter: U is traced under jit, so this runs every call.
    """
    M, K = U.shape[0], U.shape[-1]
    flat = jnp.concatenate([U.reshape(M, dim**nu, K), jnp.zeros((M, 1, K), U.dtype)], axis=1)
    table = jnp.asarray(_permutation_table(dim, nu, keep))
    return jnp.sum(flat[:, table], axis=2).transpose(1, 0, 2)


@functools.cache
def coupled_monomials(coupling_irreps: IrrepsSpec, l: int, p: int, nu: int) -> tuple[int, ...]:
    """Ids of the monomials (sorted tuples) that U_nu couples to (l, p) at all.

    Selection rules leave most rows of the symmetrised U zero (77 of 816 for L = 0,
    nu = 3, D = 16). The pattern is a property of the irreps, not of a particular
    basis: every equivariant U is a combination of the Clebsch-Gordan paths of
    `coupling_basis`, so a row zero in all of them is zero in any stored U too.
    """
    U = coupling_basis(coupling_irreps, l, p, nu)
    dim = U.shape[1]
    if U.shape[-1] == 0:
        return ()
    idx, full = monomials(dim, nu)
    flat = np.abs(U.reshape(U.shape[0], dim**nu, U.shape[-1])).max(axis=(0, 2))
    row = np.zeros(len(idx))
    np.maximum.at(row, full, flat)
    return tuple(int(m) for m in np.nonzero(row > 1e-9 * row.max())[0])


@functools.cache
def _selectors(dim: int, nu: int, keep: tuple[int, ...] | None = None) -> np.ndarray:
    """One-hot matrices [nu, dim, n_mono] picking the j-th factor of every (kept) monomial."""
    idx, _ = monomials(dim, nu)
    if keep is not None:
        idx = idx[list(keep)]
    sel = np.zeros((nu, dim, len(idx)))
    for j in range(nu):
        sel[j, idx[:, j], np.arange(len(idx))] = 1.0
    return sel


def feature_monomials(x: jnp.ndarray, nu: int, keep: tuple[int, ...] | None = None) -> jnp.ndarray:
    """x [n, c, dim] -> products prod_j x[..., i_j] over sorted tuples, [n, c, n_mono].

    With `keep`, only those monomials. The factors are picked with one-hot matmuls
    rather than gathers: their transposes (needed for forces and for training) are
    matmuls too, where a gather's transpose is a slow scatter on CPU.
    """
    sel = jnp.asarray(_selectors(x.shape[-1], nu, keep), x.dtype)
    out = x @ sel[0]
    for j in range(1, nu):
        out = out * (x @ sel[j])
    return out


@functools.cache
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
                    cg = clebsch_gordan(l_left, li, l_out) * math.sqrt(2 * l_out + 1)
                    U = np.einsum("...a,ib,abc->...ic", U_left, sel, cg)
                    new.append((l_out, p_left * pi, U))
        paths = new
    kept = [U for lo, po, U in paths if (lo, po) == (l, p)]
    if not kept:
        return np.zeros((2 * l + 1,) + (dim,) * nu + (0,))
    return np.moveaxis(np.stack(kept, axis=-1), -2, 0)


def _tables(U_syms: Sequence[jnp.ndarray], Ws: Sequence[jnp.ndarray]) -> jnp.ndarray:
    """Weights contracted into the coupling first, channels leading:

    T[c, m, s, M] = sum_k U_sym[m, M, k] W[s, k, c] for the elements s of `Ws` [S, K, c],
    monomials of all nu concatenated along m (the order of P). Returns [c, m, S*M].
    """
    T = jnp.concatenate([jnp.einsum("mMk,skc->cmsM", U, W) for U, W in zip(U_syms, Ws)], axis=1)
    return T.reshape(T.shape[0], T.shape[1], -1)


def _contract_group(xc: jnp.ndarray, factors, U_syms, Ws, onehot: jnp.ndarray) -> jnp.ndarray:
    """sum_s onehot[n, s] sum_m P[c, n, m] T[c, m, s, M] -> [c, n, M], one batched matmul.

    The monomials P of xc [c, n, D] are made here, inside the group step, so that
    autodiff carries the small dx rather than dP [c, n, m] across groups."""
    S, M = onehot.shape[1], U_syms[0].shape[1]
    P = jnp.concatenate([feature_monomials(xc, nu, keep) for nu, keep in factors], axis=-1)
    R = jnp.matmul(P, _tables(U_syms, Ws))  # [c, n, S*M]
    R = R.reshape(*R.shape[:2], S, M)
    return jnp.sum(R * onehot[None, :, :, None], axis=2)


ELEMENT_GROUP = 4
# Distinct elements a batch may hold for the single-step path of `element_contraction`
# (a structure or batch with more takes the group scan): as many as `Graph.elements` lists.
PRESENT_ELEMENTS = ELEMENT_SLOTS


def element_contraction(
    xc: jnp.ndarray,
    factors: Sequence[tuple[int, tuple[int, ...]]],
    U_syms: Sequence[jnp.ndarray],
    Ws: Sequence[jnp.ndarray],
    species: jnp.ndarray,
    group: int | None = None,
    present: int | None = None,
    elements: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """sum_nu sum_k W_nu[z_n, k, c] sum_m U_sym_nu[m, M, k] P_nu[c, n, m], weights first.

    xc: [c, n, D] features; factors: (nu, kept monomial ids) per nu, P_nu their
    monomials; U_syms: [m_nu, M, K_nu]; Ws: [Z, K_nu, c]. Returns [c, n, M].

    Contracting U with the element weights first costs m*M*K*c per element instead
    of per node, and leaves a per-node contraction over m: a batched matmul over
    channels against the tables of the elements, each node keeping its own
    element's columns. A foundation model with 89 elements pays only for the
    elements present: when at most `present` distinct elements occur (found with a
    static-size `jnp.unique`), their weights are gathered and contracted in one
    step; otherwise a scan goes over groups of `group` elements, skipping the
    groups no node belongs to. `elements` ([slots] element indices, -1 for an
    empty slot, covering every node's element), when the batch lists them
    (`Graph.elements`), takes the one-step path without the search and the branch
    (whose backward pass is slow on CPU).
    """
    group = ELEMENT_GROUP if group is None else group
    present = PRESENT_ELEMENTS if present is None else present
    Z, dtype = Ws[0].shape[0], xc.dtype
    if Z <= max(group, present):
        return _contract_group(xc, factors, U_syms, Ws, jax.nn.one_hot(species, Z, dtype=dtype))
    if elements is not None:
        return _present_contraction(xc, factors, U_syms, Ws, species, elements)

    # sorted distinct elements, padded with -1 (no node's element); one slot more than
    # `present` tells whether they all fit
    elements = jnp.unique(species, size=present + 1, fill_value=-1)

    def few_elements(xc):
        return _present_contraction(xc, factors, U_syms, Ws, species, elements[:present])

    def many_elements(xc):
        return _grouped_contraction(xc, factors, U_syms, Ws, species, group)

    return jax.lax.cond(elements[present] < 0, few_elements, many_elements, xc)


def _present_contraction(xc, factors, U_syms, Ws, species, chosen) -> jnp.ndarray:
    """The contraction with the weights of the elements `chosen` [slots] (-1: empty slot)."""
    onehot = (species[:, None] == chosen[None, :]).astype(xc.dtype)  # empty slots match no node
    return _contract_group(xc, factors, U_syms, [W[jnp.maximum(chosen, 0)] for W in Ws], onehot)


def _grouped_contraction(xc, factors, U_syms, Ws, species, group: int) -> jnp.ndarray:
    """`element_contraction` as a scan over groups of `group` elements, skipping absent groups."""
    Z, dtype = Ws[0].shape[0], xc.dtype
    n_groups = -(-Z // group)
    stacked = [
        jnp.pad(W, ((0, n_groups * group - Z), (0, 0), (0, 0))).reshape(n_groups, group, *W.shape[1:]) for W in Ws
    ]
    gid = species // group
    onehot = jax.nn.one_hot(species % group, group, dtype=dtype)

    def body(out, xs):
        g, Wg = xs
        members = gid == g

        def add_group(out):
            return out + _contract_group(xc, factors, U_syms, Wg, onehot * members[:, None].astype(dtype))

        return jax.lax.cond(jnp.any(members), add_group, lambda o: o, out), None

    out0 = jnp.zeros((xc.shape[0], xc.shape[1], U_syms[0].shape[1]), dtype)
    out, _ = jax.lax.scan(jax.checkpoint(body), out0, (jnp.arange(n_groups), stacked))
    return out


# Nodes per step of `over_node_chunks`: the monomials of 1024 nodes (MACE-MP-0 medium, 128
# channels, ~1100 kept monomials) are ~0.6 GB in float32, and the backward pass of a step
# holds about five such buffers; all nodes of a 10^5-atom cell at once would be ~56 GB.
# A step of 1024 nodes is still minutes of matmul work per thousand steps' loop overhead.
# Small systems (the usual case) take the single-step path.
NODE_CHUNK = 1024
NODE_CHUNK_ACCELERATOR = 8192  # GPU/TPU: fewer, larger sequential steps (~4.6 GB of monomials)


def over_node_chunks(fn, x: jnp.ndarray, species: jnp.ndarray, chunk: int | None = None) -> jnp.ndarray:
    """fn(xc [c, n, D], species [n]) -> [c, n, M] for x [n, c, D], applied `chunk` nodes
    at a time; returns [n, c, M].

    The contraction is independent per node, so large systems are split into node
    chunks (a scan; the backward pass recomputes each chunk's monomials) and memory
    stays linear in the number of atoms with a small constant. The chunks are cut
    along the node axis, which leads, and turned channels-first inside each step, so
    no transposed copy of the whole [n, c, D] input or its gradient is made. Padded
    nodes are zero and element 0; their rows are cut off.
    """
    if chunk is None:
        chunk = backend_chunk(NODE_CHUNK, NODE_CHUNK_ACCELERATOR)
    n, c, D = x.shape
    if n <= chunk:
        return jnp.swapaxes(fn(jnp.swapaxes(x, 0, 1), species), 0, 1)
    n_chunks, chunk = even_chunks(n, chunk)
    pad = n_chunks * chunk - n
    xs = jnp.pad(x, ((0, pad), (0, 0), (0, 0))).reshape(n_chunks, chunk, c, D)
    ss = jnp.pad(species, (0, pad)).reshape(n_chunks, chunk)

    def step(a):
        x_, s_ = a
        return jnp.swapaxes(fn(jnp.swapaxes(x_, 0, 1), s_), 0, 1)  # [chunk, c, M]

    out = jax.lax.map(jax.checkpoint(step), (xs, ss))  # [n_chunks, chunk, c, M]
    return out.reshape(n_chunks * chunk, c, -1)[:n]


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
    backend: str = "xla"  # see `jaxtl.model.cueq`

    @nn.compact
    def __call__(self, x: jnp.ndarray | None, species=None, elements: jnp.ndarray | None = None):
        """x: [n, channels, D]; species: [n]; elements: see `element_contraction`.
        Returns [n, channels, 2l+1]. x None: returns the contraction as a pure function
        (x [r, channels, D], species [r]) -> [r, channels, 2l+1] of any rows, for the
        caller's own loop over nodes (xla backend)."""
        dim = sum(2 * l + 1 for _, l, _ in self.coupling_irreps) if x is None else x.shape[-1]
        dtype = self.dtype if x is None else x.dtype
        U_syms, Ws, factors = [], [], []
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
            keep = coupled_monomials(self.coupling_irreps, self.l, self.p, nu)
            if keep:
                U_syms.append(symmetrize_U(U.astype(dtype), dim, nu, keep))  # [n_kept, M, K]
                Ws.append(W.astype(dtype))
                factors.append((nu, keep))
        channels, M = self.channels, 2 * self.l + 1

        def rows_fn(x_rows, species_rows):
            if not factors:
                return jnp.zeros((x_rows.shape[0], channels, M), x_rows.dtype)
            # channels leading: the contraction is then one batched matmul per channel
            xc = jnp.swapaxes(x_rows, 0, 1)
            return jnp.swapaxes(element_contraction(xc, factors, U_syms, Ws, species_rows, elements=elements), 0, 1)

        if x is None:
            return rows_fn
        if not factors:
            return jnp.zeros((x.shape[0], self.channels, 2 * self.l + 1), x.dtype)
        if self.backend == "cueq":
            return cueq.contraction(x, factors, U_syms, Ws, species, elements)
        return over_node_chunks(
            lambda xc, s_: element_contraction(xc, factors, U_syms, Ws, s_, elements=elements), x, species
        )  # [n, c, 2l+1]

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
    backend: str = "xla"

    @nn.compact
    def __call__(self, x: jnp.ndarray | None, species=None, elements=None):
        """x None: returns the pure function (x [r, c, D], species [r]) -> blocks of any
        rows (see `Contraction`)."""
        out = tuple(
            Contraction(
                self.coupling_irreps,
                l,
                p,
                self.correlation,
                self.num_elements,
                mul,
                self.dtype,
                self.backend,
                name=f"contraction_{ir_str(l, p)}",
            )(x, species, elements)
            for mul, l, p in self.irreps_out
        )
        if x is not None:
            return out
        return lambda x_rows, species_rows: tuple(fn(x_rows, species_rows) for fn in out)


def contraction_flops(n_nodes: int, channels: int, dim: int, Ks: Sequence[int], M: int) -> int:
    """Multiply-adds of one contraction (for benchmarks)."""
    return sum(
        n_nodes * channels * (math.comb(dim + nu - 1, nu) * (M * K + nu) + M * K) for nu, K in enumerate(Ks, start=1)
    )
