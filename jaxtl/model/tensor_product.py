"""The 'uvu' convolution tensor product of MACE's interaction blocks.

mace-torch builds it with `tp_out_irreps_with_instructions`: every path
(edge irrep l1) x (spherical harmonic l2) -> l3 whose output irrep is in the
target irreps, outputs stably sorted by irrep. Each output slot k has exactly one
path, weighted per edge and channel by `weights[:, off_k : off_k + mul]`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import e3nn_jax as e3nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model.irreps import IrrepsSpec, torch_sort_key


class TPPath(NamedTuple):
    i_in: int  # index into edge irreps
    l_sh: int  # spherical harmonic degree
    mul: int
    l_out: int
    p_out: int


def conv_tp_paths(edge_irreps: IrrepsSpec, sh_irreps: IrrepsSpec, target_irreps: IrrepsSpec) -> tuple[TPPath, ...]:
    """The sorted output slots (mace's `irreps_mid`), one path each."""
    targets = {(l, p) for _, l, p in target_irreps}
    paths = []
    for i, (mul, l1, p1) in enumerate(edge_irreps):
        for _, l2, p2 in sh_irreps:
            for l3 in range(abs(l1 - l2), l1 + l2 + 1):
                if (l3, p1 * p2) in targets:
                    paths.append(TPPath(i, l2, mul, l3, p1 * p2))
    # stable sort by output irrep, as e3nn-torch's Irreps.sort()
    return tuple(sorted(paths, key=lambda t: torch_sort_key((t.mul, t.l_out, t.p_out))))


def mid_irreps(paths: Sequence[TPPath]) -> IrrepsSpec:
    return tuple((t.mul, t.l_out, t.p_out) for t in paths)


def weight_numel(paths: Sequence[TPPath]) -> int:
    return sum(t.mul for t in paths)


def _cg(l1: int, l2: int, l3: int) -> np.ndarray:
    if (l1 + l2 + l3) % 2:
        # e3nn-jax and e3nn-torch differ in sign for some odd triples; natural-parity
        # models never need them (parity selection), so refuse rather than guess.
        raise NotImplementedError(f"odd Clebsch-Gordan path ({l1}, {l2}, {l3}) is not supported")
    return e3nn.clebsch_gordan(l1, l2, l3)


def conv_tp(
    x_edges: Sequence[jnp.ndarray],
    sh: Sequence[jnp.ndarray],
    weights: jnp.ndarray,
    paths: Sequence[TPPath],
) -> list[jnp.ndarray]:
    """Per-edge messages.

    x_edges: blocks of sender features `[n_edges, mul, 2l1+1]` (edge irreps);
    sh: `[n_edges, 2l2+1]` per l2; weights: `[n_edges, weight_numel]`.
    Returns one block `[n_edges, mul, 2l3+1]` per sorted output slot.
    """
    out, offset = [], 0
    for t in paths:
        x = x_edges[t.i_in]
        l1 = (x.shape[-1] - 1) // 2
        cg = jnp.asarray(_cg(l1, t.l_sh, t.l_out), x.dtype) * math.sqrt(2 * t.l_out + 1)
        w = weights[:, offset : offset + t.mul]
        offset += t.mul
        # Contract the harmonics with the CG first ([e, a, c], a few numbers per edge),
        # then the features by broadcasting: per-edge matrices are far too small for
        # a batched matmul to pay off, and XLA fuses this into one loop.
        yc = jnp.sum(sh[t.l_sh][:, None, :, None] * cg[None], axis=2)  # [e, a, c]
        m = jnp.sum(x[:, :, :, None] * yc[:, None, :, :], axis=2)
        out.append(m * w[:, :, None])
    return out


# Edges per step of `chunked_messages`. CPU: 256 x 5120 numbers (MACE-MP-0 medium) is a few
# MB, cache-sized, and the loop overhead is small next to the work of a step. GPU/TPU: the
# steps run one after another, so a step must fill the device: 65536 edges (1.3 GB of
# float32 messages at 5120 per edge; one step for cells up to ~800 atoms).
EDGE_CHUNK = 256
EDGE_CHUNK_ACCELERATOR = 65536


def backend_chunk(cpu: int, accelerator: int) -> int:
    """The chunk size for jax's default backend: `cpu` on the CPU, `accelerator` on a GPU or TPU."""
    return cpu if jax.default_backend() == "cpu" else accelerator


def chunked_messages(
    node_blocks: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    n_nodes: int,
    edge_data,
    edge_fn,
    paths: Sequence[TPPath],
    chunk: int | None = None,
) -> list[jnp.ndarray]:
    """sum_{e -> i} conv_tp(h[senders[e]], sh_e, w_e) for every node i, edges taken `chunk` at a time.

    `edge_data` is a pytree of per-edge arrays `[n_edges, ...]`; `edge_fn(chunk_data)`
    returns `(sh blocks [chunk, 2l+1], weights [chunk, weight_numel])` for one chunk.
    The per-edge messages (channels x irrep dims, 2048 to 5120 numbers per edge for
    MACE-MP-0) then only ever exist for one chunk at a time, summed into the node
    messages as they are made; the backward pass recomputes them chunk by chunk. On
    CPU this replaces hundreds of MB of freshly written per-edge tensors (page faults
    and memory traffic on every call) with a working set that stays in cache.
    Returns one block `[n_nodes, mul, 2l3+1]` per path, as `conv_tp` + a segment sum.
    """
    n_edges = senders.shape[0]
    if chunk is None:
        chunk = backend_chunk(EDGE_CHUNK, EDGE_CHUNK_ACCELERATOR)
    chunk = max(1, min(chunk, n_edges))
    n_chunks = -(-n_edges // chunk)
    pad = n_chunks * chunk - n_edges
    dtype = node_blocks[0].dtype

    def split(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape(n_chunks, chunk, *a.shape[1:])

    valid = jnp.ones((n_edges,), dtype)
    xs = jax.tree_util.tree_map(split, (senders, receivers, valid, edge_data))
    widths = [t.mul * (2 * t.l_out + 1) for t in paths]

    def body(total, x):
        s, r, ok, data = x
        sh, w = edge_fn(data)
        msgs = conv_tp([b[s] for b in node_blocks], sh, w * ok[:, None], paths)
        flat = jnp.concatenate([m.reshape(chunk, -1) for m in msgs], axis=-1)
        return total.at[r].add(flat), None

    total0 = jnp.zeros((n_nodes, sum(widths)), dtype)
    total, _ = jax.lax.scan(jax.checkpoint(body), total0, xs)
    out, start = [], 0
    for t, wdt in zip(paths, widths):
        out.append(total[:, start : start + wdt].reshape(n_nodes, t.mul, 2 * t.l_out + 1))
        start += wdt
    return out
