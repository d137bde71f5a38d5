"""NVIDIA cuEquivariance kernels for the two equivariant hot spots (optional backend).

`MACE(config, backend="cueq")` runs the convolution tensor product (with its gather
of sender features and scatter onto receivers) and the symmetric contraction as
`cuequivariance_jax.segmented_polynomial` calls: fused CUDA kernels ("uniform_1d")
on a GPU, the library's pure-JAX reference ("naive") elsewhere, which is how the
tests check this path on a CPU. Everything else (radial MLP, linears, readouts) is
the same code as the default "xla" backend, and so are the weights.

The polynomials are built here from jaxtl's own tables, not from cuEquivariance's
MACE descriptors, so that a converted model needs no change of basis:

* the contraction keeps jaxtl's weights-first order (see `jaxtl.model.product`):
  the operand gathered per node is the element's table
  T[m, M, c] = sum_k U_sym[m, M, k] W[z, k, c], one segment of `channels` per
  (monomial m, output component M), and each path multiplies one table segment by
  the nu features of monomial m, with coefficient 1;
* the convolution is mace-torch's 'uvu' product, one segment of `channels` per
  (path, input component) and per (path, output component), the Clebsch-Gordan
  coefficients (times sqrt(2 l3 + 1), as in `tensor_product.conv_tp`) on the paths.

Features travel in cuEquivariance's "ir_mul" layout, [..., components, channels].
`import cuequivariance_jax` happens only when this backend is used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model.common import TPPath, conv_clebsch_gordan, monomials, split_edges, split_pieces

BACKENDS = ("xla", "cueq")


def check_backend(backend: str) -> None:
    """Raise a clear error for an unknown backend or a missing cuEquivariance install."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "cueq":
        try:
            import cuequivariance_jax  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "backend='cueq' needs NVIDIA cuEquivariance: pip install cuequivariance-jax "
                "(and cuequivariance-ops-jax-cu12 or -cu13 for the GPU kernels)"
            ) from err


def _modules():
    import cuequivariance as cue
    import cuequivariance_jax as cuex

    return cue, cuex


def method() -> str:
    """'uniform_1d' (fused CUDA kernels) on a GPU, else the pure-JAX 'naive' reference."""
    return "uniform_1d" if jax.default_backend() == "gpu" else "naive"


def _run(poly, inputs, out_shape, dtype, indices=None):
    """One `segmented_polynomial` call with a single output [*out_shape]."""
    _, cuex = _modules()
    m = method()
    if m == "uniform_1d" and not _uniform(poly):
        m = "naive"  # mixed channel counts: correct, not fused
    [out] = cuex.segmented_polynomial(
        poly,
        inputs,
        [jax.ShapeDtypeStruct(out_shape, dtype)],
        indices,
        method=m,
        options={"math_dtype": jnp.dtype(dtype).name},
    )
    return out


def _uniform(poly) -> bool:
    return all(len({s for s in op.segments}) <= 1 for op in (*poly.inputs, *poly.outputs))


# ----------------------------------------------------------------------------------------
# symmetric contraction


@functools.cache
def contraction_polynomial(dim: int, M: int, channels: int, factors: tuple[tuple[int, tuple[int, ...]], ...]):
    """The polynomial out[M, c] = sum_nu sum_m T_nu[m, M, c] prod_j x[i_j(m), c].

    dim: feature components D; M: output components (2l+1); factors: (nu, kept
    monomial ids) per nu, as `product.Contraction` keeps them. Operands: the tables
    (sum_nu n_kept_nu * M segments), the features (D segments), the output (M).
    """
    cue, _ = _modules()
    seg = (channels,)
    n_tables = sum(len(keep) for _, keep in factors) * M
    table_op = cue.SegmentedOperand(ndim=1, segments=[seg] * n_tables)
    x_op = cue.SegmentedOperand(ndim=1, segments=[seg] * dim)
    out_op = cue.SegmentedOperand(ndim=1, segments=[seg] * M)
    operations, offset = [], 0
    for nu, keep in factors:
        d = cue.SegmentedTensorProduct.from_subscripts(",".join(["u"] * (nu + 2)))
        d.set_operand(0, table_op)
        for j in range(1, nu + 1):
            d.set_operand(j, x_op)
        d.set_operand(nu + 1, out_op)
        idx = monomials(dim, nu)[0][list(keep)]
        for r, mono in enumerate(idx):
            for out in range(M):
                d.add_path(offset + r * M + out, *(int(i) for i in mono), out, c=1.0)
        offset += len(keep) * M
        operations.append((cue.Operation([0] + [1] * nu + [2]), d))
    return cue.SegmentedPolynomial([table_op, x_op], [out_op], operations)


def contraction(
    x: jnp.ndarray,
    factors: Sequence[tuple[int, tuple[int, ...]]],
    U_syms: Sequence[jnp.ndarray],
    Ws: Sequence[jnp.ndarray],
    species: jnp.ndarray,
    elements: jnp.ndarray | None,
) -> jnp.ndarray:
    """`product.element_contraction` as one cuEquivariance call.

    x: [n, c, D] features; factors, U_syms [m_nu, M, K_nu], Ws [Z, K_nu, c] as there;
    species [n]; elements: [slots] element indices present (-1: empty slot) or None.
    The tables are made for the listed elements only (all Z when not listed) and
    gathered per node inside the kernel. Returns [n, c, M].
    """
    n, c, D = x.shape
    M = U_syms[0].shape[1]
    if elements is None:
        node_table = species
        weights = Ws
    else:
        node_table = jnp.argmax(species[:, None] == elements[None, :], axis=1).astype(jnp.int32)
        weights = [W[jnp.maximum(elements, 0)] for W in Ws]
    tables = jnp.concatenate(
        [jnp.einsum("mMk,skc->smMc", U, W).reshape(W.shape[0], -1) for U, W in zip(U_syms, weights)], axis=1
    )
    poly = contraction_polynomial(D, M, c, tuple(factors))
    x_ir_mul = jnp.swapaxes(x, 1, 2).reshape(n, D * c)
    out = _run(poly, [tables, x_ir_mul], (n, M * c), x.dtype, indices=[node_table, None, None])
    return jnp.swapaxes(out.reshape(n, M, c), 1, 2)


# ----------------------------------------------------------------------------------------
# convolution tensor product


@functools.cache
def conv_polynomial(in_dims: tuple[tuple[int, int], ...], sh_dims: tuple[int, ...], paths: tuple[TPPath, ...]):
    """The 'uvu' product msg[p, M3, c] = w[p, c] sum_ab CG[a, b, M3] x[i_p, a, c] Y[l_p, b].

    in_dims: (mul, 2l1+1) of each edge irrep; sh_dims: 2l2+1 per harmonic degree
    l2 = 0, 1, ...; paths: `tensor_product.conv_tp_paths`. Operands: the per-edge
    weights (one segment of `mul` per path), the sender features, the harmonics
    (scalars), the message (one segment of `mul` per path and output component).
    """
    cue, _ = _modules()
    d = cue.SegmentedTensorProduct.from_subscripts("u,u,,u")
    for t in paths:
        d.add_segment(0, (t.mul,))
    x_start = []
    for mul, dim in in_dims:
        x_start.append(len(d.operands[1].segments))
        for _ in range(dim):
            d.add_segment(1, (mul,))
    sh_start = list(np.cumsum((0,) + sh_dims[:-1]))
    for _ in range(sum(sh_dims)):
        d.add_segment(2, ())
    for p, t in enumerate(paths):
        dim_in = in_dims[t.i_in][1]
        out_start = len(d.operands[3].segments)
        for _ in range(2 * t.l_out + 1):
            d.add_segment(3, (t.mul,))
        cg = np.asarray(conv_clebsch_gordan((dim_in - 1) // 2, t.l_sh, t.l_out)) * math.sqrt(2 * t.l_out + 1)
        for a, b, m3 in zip(*np.nonzero(np.abs(cg) > 1e-12)):
            d.add_path(
                p, x_start[t.i_in] + int(a), int(sh_start[t.l_sh] + b), out_start + int(m3), c=float(cg[a, b, m3])
            )
    return cue.SegmentedPolynomial(d.operands[:3], d.operands[3:], [(cue.Operation([0, 1, 2, 3]), d)])


# Edges per cuEquivariance call of the convolution: the radial MLP's weights of a chunk,
# [chunk, weight_numel], are its largest tensor (2.7 GB of float32 at 2^19 edges for
# MACE-MP-0 medium's 1,280 weights per edge); a 10^5-atom cell (7.6 million edges) then
# takes 15 calls in a scan instead of one 39 GB tensor.
EDGE_CHUNK = 1 << 19


def conv_messages(
    node_blocks: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    sh: Sequence[jnp.ndarray],
    radial_data,
    radial_fn,
    paths: Sequence[TPPath],
    chunk: int | None = None,
) -> list[jnp.ndarray]:
    """`tensor_product.messages` as cuEquivariance calls: gather, product and scatter in one.

    node_blocks: [n_nodes, mul, 2l1+1] per edge irrep; senders, receivers: [n_edges];
    sh, radial_data, radial_fn: as `tensor_product.chunked_messages` (the harmonics
    [n_edges, 2l2+1] per l2; radial_fn gives the weights [n, mul] of each path for n rows
    of radial_data). Edges go `chunk`
    (default `EDGE_CHUNK`) at a time. Returns one block [n_nodes, mul, 2l3+1] per path,
    summed over incoming edges.
    """
    n_nodes, dtype = node_blocks[0].shape[0], node_blocks[0].dtype
    n_edges = senders.shape[0]
    chunk = max(1, min(EDGE_CHUNK if chunk is None else chunk, n_edges))
    in_dims = tuple((b.shape[1], b.shape[2]) for b in node_blocks)
    x = jnp.concatenate([jnp.swapaxes(b, 1, 2).reshape(n_nodes, -1) for b in node_blocks], axis=1)
    width = sum(t.mul * (2 * t.l_out + 1) for t in paths)

    def call(s, r, sh, data, mask=None):
        w = jnp.concatenate(radial_fn(data), axis=1)
        if mask is not None:  # padding edges of the last chunk add nothing
            w = w * mask[:, None].astype(w.dtype)
        poly = conv_polynomial(in_dims, tuple(a.shape[-1] for a in sh), tuple(paths))
        y = jnp.concatenate(list(sh), axis=1).astype(dtype)
        return _run(poly, [w.astype(dtype), x, y], (n_nodes, width), dtype, indices=[None, s, None, r])

    if chunk == n_edges:
        out = call(senders, receivers, tuple(sh), radial_data)
    else:

        def body(total, xs):
            (s, r, sh_chunk, data), mask = xs
            return total + call(s, r, sh_chunk, data, mask), None

        xs = split_edges((senders, receivers, tuple(sh), radial_data), chunk)
        out, _ = jax.lax.scan(jax.checkpoint(body), jnp.zeros((n_nodes, width), dtype), xs)
    # ir_mul per path -> the [n_nodes, mul, 2l3+1] blocks of `path_blocks`
    pieces = split_pieces(out, [t.mul * (2 * t.l_out + 1) for t in paths], axis=1)
    return [jnp.swapaxes(b.reshape(n_nodes, 2 * t.l_out + 1, t.mul), 1, 2) for b, t in zip(pieces, paths)]
