"""The 'uvu' convolution tensor product of MACE's interaction blocks.

mace-torch builds it with `tp_out_irreps_with_instructions`: every path
(edge irrep l1) x (spherical harmonic l2) -> l3 whose output irrep is in the
target irreps, outputs stably sorted by irrep. Each output slot k has exactly one
path, weighted per edge and channel by its own radial weights [n_edges, mul].
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxtl.model import cueq
from jaxtl.model.common import TPPath, conv_clebsch_gordan, split_edges, split_pieces
from jaxtl.model.irreps import IrrepsSpec, torch_sort_key


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


def path_weights(weights: jnp.ndarray, paths: Sequence[TPPath]) -> list[jnp.ndarray]:
    """[n, weight_numel] -> one [n, mul] per path, in path order."""
    return split_pieces(weights, [t.mul for t in paths], axis=1)


def conv_tp(
    x_edges: Sequence[jnp.ndarray],
    sh: Sequence[jnp.ndarray],
    weights: Sequence[jnp.ndarray],
    paths: Sequence[TPPath],
) -> list[jnp.ndarray]:
    """Per-edge messages.

    x_edges: blocks of sender features `[n_edges, mul, 2l1+1]` (edge irreps);
    sh: `[n_edges, 2l2+1]` per l2; weights: `[n_edges, mul]` per path.
    Returns one block `[n_edges, mul, 2l3+1]` per sorted output slot.
    """
    out = []
    for t, w in zip(paths, weights):
        x = x_edges[t.i_in]
        l1 = (x.shape[-1] - 1) // 2
        cg = jnp.asarray(conv_clebsch_gordan(l1, t.l_sh, t.l_out), x.dtype) * math.sqrt(2 * t.l_out + 1)
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


def even_chunks(n: int, at_most: int) -> tuple[int, int]:
    """(count, size): the fewest chunks of at most `at_most` items that cover `n` (>= 1),
    all of one size, so that the padding (count * size - n) is less than one item a chunk
    rather than most of a last chunk."""
    count = -(-n // at_most)
    return count, -(-n // count)


def chunked_messages(
    node_blocks: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    n_nodes: int,
    sh: Sequence[jnp.ndarray],
    radial_data,
    radial_fn,
    paths: Sequence[TPPath],
    chunk: int | None = None,
) -> list[jnp.ndarray]:
    """sum_{e -> i} conv_tp(h[senders[e]], sh_e, w_e) for every node i, edges taken `chunk` at a time.

    sh: the spherical harmonics `[n_edges, 2l2+1]` per l2; `radial_data` is a pytree of
    per-edge arrays `[n_edges, ...]` and `radial_fn(rows)` the radial weights of any
    rows of it, one `[rows, mul]` per path (the radial MLP runs chunk by chunk too).
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
    dtype = node_blocks[0].dtype
    xs = split_edges((senders, receivers, tuple(sh), radial_data), chunk)
    widths = [t.mul * (2 * t.l_out + 1) for t in paths]

    def body(total, x):
        (s, r, sh_chunk, data), ok = x
        mask = ok[:, None].astype(dtype)
        msgs = conv_tp([b[s] for b in node_blocks], sh_chunk, [w * mask for w in radial_fn(data)], paths)
        flat = jnp.concatenate([m.reshape(chunk, -1) for m in msgs], axis=-1)
        return total.at[r].add(flat), None

    total0 = jnp.zeros((n_nodes, sum(widths)), dtype)
    total, _ = jax.lax.scan(jax.checkpoint(body), total0, xs)
    return path_blocks(total, paths)


@jax.custom_vjp
def _permute_rows(a: jnp.ndarray, rows: jnp.ndarray, inverse: jnp.ndarray) -> jnp.ndarray:
    """The rows of `a` [n, ...] at `rows` [m]; an index n or above reads a row of zeros.

    `inverse` [n] is the position in `rows` of each row of `a` (m if none): every row is
    taken at most once, so the transpose is the gather `_permute_rows(g, inverse, rows)`,
    at any order of differentiation, where a plain gather's is a scatter-add (slow on CPU).
    """
    return jnp.take(a, rows, axis=0, mode="fill", fill_value=0)


def _permute_rows_fwd(a, rows, inverse):
    return _permute_rows(a, rows, inverse), (rows, inverse)


def _permute_rows_bwd(res, g):
    rows, inverse = res
    return _permute_rows(g, inverse, rows), None, None


_permute_rows.defvjp(_permute_rows_fwd, _permute_rows_bwd)


def path_blocks(total: jnp.ndarray, paths: Sequence[TPPath]) -> list[jnp.ndarray]:
    """[n, sum of path widths] -> one block [n, mul, 2l3+1] per path, in path order."""
    pieces = split_pieces(total, [t.mul * (2 * t.l_out + 1) for t in paths], axis=1)
    return [b.reshape(total.shape[0], t.mul, 2 * t.l_out + 1) for b, t in zip(pieces, paths)]


# Edge slots (nodes x neighbour slots) per step of `node_major_messages`. On a 2-core CPU
# with huge pages (see `jaxtl._allocator`), one step for a whole training batch was
# fastest: a 32x0e Si training step (5 structures, 12,800 slots) took 115 ms in one step,
# 159 ms in 13 steps of 1024 and 179 ms in 4 of 4096 (the loop recomputes each step in
# both backward passes); energy+forces of MP-0-shaped models on a 108-atom Cu cell
# (8,960 slots) were the same within noise at 1024 and 16384 slots. Since the radial MLP
# runs once per edge pair in one step (session 9), one step pays off for larger cells
# too: MP-0-medium float32 energy+forces of 256 Cu atoms (20,480 slots) took 444 ms in
# one step against 728 ms in two of 16,384 (one process, alternating; 864 atoms: 1.40
# against 2.03 s, but 6.3 GB of XLA temporaries in float64 against 2.4). Larger systems
# go in steps, so memory stays linear in the number of atoms. GPU/TPU: as many as
# `EDGE_CHUNK_ACCELERATOR`.
NODE_MAJOR_SLOTS = 32768
# A slim model's per-slot tensors are small, so it takes more slots a step: as many as keep
# its products w * x within this many bytes. MP-0 medium (2,816 numbers a slot in its second
# layer) fills them at ~24k slots in float32, so wide models keep NODE_MAJOR_SLOTS. The 16x0e
# H2/Cu MACE (64 numbers a slot) at 1,008 atoms (49,152 slots): 380 ms in one step against
# 876 ms in two (fastest of 5 calls each, alternating in one process, load ~10; forces equal
# to 3e-15 eV/A).
NODE_MAJOR_BYTES = 1 << 28


def node_major_slots(node_blocks: Sequence[jnp.ndarray], paths: Sequence[TPPath]) -> int:
    """Slots a step of `node_major_messages` on the CPU: NODE_MAJOR_SLOTS, or more while the
    products w * x of all of them (mul x (2l1+1) numbers per path and slot) fit NODE_MAJOR_BYTES."""
    width = sum(t.mul * node_blocks[t.i_in].shape[-1] for t in paths)
    itemsize = jnp.dtype(node_blocks[0].dtype).itemsize if node_blocks else 4
    return max(NODE_MAJOR_SLOTS, NODE_MAJOR_BYTES // max(width * itemsize, 1))


def _positions(rows: jnp.ndarray, n: int) -> jnp.ndarray:
    """The inverse of a partial index map: [n] the position in `rows` [m] of each index
    0..n-1, m where it is absent (indices n and above in `rows` are ignored)."""
    m = rows.shape[0]
    return jnp.full((n,), m, rows.dtype).at[rows].set(jnp.arange(m, dtype=rows.dtype), mode="drop")


def pair_weights_in_slots(
    radial_data, radial_fn, pairs: jnp.ndarray, slot_edges: jnp.ndarray, slot_of_edge: jnp.ndarray
) -> list[jnp.ndarray]:
    """The radial weights of each slot's edge, one [n_slots, mul] per path, computed once
    per pair of edges.

    An edge j -> i (shift S) and its reverse i -> j (shift -S) have the same length, so
    the same radial embedding and radial weights: the MLP runs on the first edge of
    each pair only, and the weights go to the slots of both edges.

    radial_data: pytree of per-edge arrays [n_edges, ...]; radial_fn: rows -> weights
    [rows, mul] per path; pairs: [2, n_pairs] the edge ids of each pair (n_edges in
    unused columns, see `Graph.edge_pairs`); slot_edges: [n_slots] the edge of each slot
    (n_edges when empty); slot_of_edge: [n_edges] its inverse (n_slots when none).
    Zero in empty slots. Every move is a `_permute_rows`, so every derivative is a
    gather too, and XLA can fuse the moves into the products that read the weights.
    """
    n_edges = slot_of_edge.shape[0]
    n_slots, n_pairs = slot_edges.shape[0], pairs.shape[1]
    first_pair = _positions(pairs[0], n_edges)  # [n_edges]: the pair of each first edge, n_pairs if none
    w_pairs = radial_fn(jax.tree_util.tree_map(lambda a: _permute_rows(a, pairs[0], first_pair), radial_data))
    moves = []  # (rows, inverse) of the first and of the second edges
    for edges, pair_of in ((pairs[0], first_pair), (pairs[1], _positions(pairs[1], n_edges))):
        pair_of_slot = jnp.take(pair_of, slot_edges, mode="fill", fill_value=n_pairs)
        slot_of_pair = jnp.take(slot_of_edge, edges, mode="fill", fill_value=n_slots)
        moves.append((pair_of_slot, slot_of_pair))
    first, second = moves
    return [_permute_rows(w, *first) + _permute_rows(w, *second) for w in w_pairs]


def _row_products(w: Sequence[jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """[slots, paths * (2l1+1), mul]: w[p][s, c] * x[s, a, c], one product of channel rows
    per (path, input component) rather than a broadcast: XLA:CPU vectorises these along
    the channels, and their gradients are sums of such rows, where a broadcast's gradient
    reduces over short middle axes (several times slower)."""
    return jnp.stack([wp * x[:, a] for wp in w for a in range(x.shape[1])], axis=1)


@jax.custom_vjp
def slot_sum(sh: jnp.ndarray, products: jnp.ndarray) -> jnp.ndarray:
    """sum_k sh[n, k, b] products[n, k, q] -> [n, b, q]: one batched matmul over the K slots.

    Its transpose in the products is `_spread` and the reverse: as autodiff writes it, a
    batched matmul contracting only the 2l+1 <= 7 harmonic components, which ran 2-3.6x
    slower on the CPU than the short sum of rows `_spread` makes (and which XLA can fuse
    into what reads it). The three functions (these two and `_sh_gradient`, the gradient
    in sh) are each other's gradients, so every order of reverse-mode differentiation
    (forces, training) keeps these forms. Forward mode (`jax.jvp`, `jax.jacfwd`) does not
    go through a custom VJP: take Hessians as `jax.jacrev(jax.jacrev(...))`."""
    return jnp.einsum("nkb,nkq->nbq", sh, products)


@jax.custom_vjp
def _spread(sh: jnp.ndarray, g: jnp.ndarray) -> jnp.ndarray:
    """sum_b sh[n, k, b] g[n, b, q] -> [n, K, q], the transpose of `slot_sum` in its
    second argument, as a sum of 2l+1 rows scaled per slot."""
    return sum(sh[:, :, b, None] * g[:, None, b, :] for b in range(sh.shape[2]))


@jax.custom_vjp
def _sh_gradient(g: jnp.ndarray, products: jnp.ndarray) -> jnp.ndarray:
    """sum_q g[n, b, q] products[n, k, q] -> [n, K, b]: both functions' gradient in sh."""
    return jnp.einsum("nbq,nkq->nkb", g, products)


_sh_gradient.defvjp(
    lambda g, products: (_sh_gradient(g, products), (g, products)),
    lambda res, c: (slot_sum(c, res[1]), _spread(c, res[0])),
)
slot_sum.defvjp(
    lambda sh, products: (slot_sum(sh, products), (sh, products)),
    lambda res, g: (_sh_gradient(g, res[1]), _spread(res[0], g)),
)
_spread.defvjp(
    lambda sh, g: (_spread(sh, g), (sh, g)),
    lambda res, c: (_sh_gradient(res[1], c), slot_sum(res[0], c)),
)


def neighbour_sum(sh: jnp.ndarray, w: Sequence[jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """sum_k sh[n, k, b] w[p][nk, c] x[nk, a, c] -> [n, b, paths * (2l1+1) * mul], (p, a, c) flat.

    sh: harmonics [n, K, 2l2+1] of each node's K slots; w: radial weights [n * K, mul],
    one per path; x: sender features [n * K, 2l1+1, mul]. The sum over slots is one
    batched matmul over the products w * x (`_row_products`), harmonics leading so that
    the large operand keeps its layout.
    """
    n, K, _ = sh.shape
    return slot_sum(sh, _row_products(w, x).reshape(n, K, -1))


def slot_messages(
    x: Sequence[jnp.ndarray],
    sh_slots: Sequence[jnp.ndarray],
    w: Sequence[jnp.ndarray],
    groups: dict,
    paths: Sequence[TPPath],
    n: int,
    K: int,
) -> jnp.ndarray:
    """The messages of `n` nodes from their K neighbour slots each: [n, sum over paths of
    mul * (2l3+1)], paths in order.

    x: sender features of each slot, one [n * K, 2l1+1, mul] per input irrep (channels
    last, so that the per-slot products are of contiguous channel rows, see
    `neighbour_sum`); sh_slots:
    harmonics [n * K, 2l2+1] per degree; w: radial weights [n * K, mul] per path (zero in
    empty slots); groups: {(input irrep, harmonic degree): [path indices]}.
    """
    dtype = x[0].dtype
    out = [None] * len(paths)
    for (i_in, l_sh), group in groups.items():
        dim_in = x[i_in].shape[1]
        # [nodes, 2l2+1, paths * (2l1+1) * mul]: the paths of a group share the input
        summed = neighbour_sum(sh_slots[l_sh].reshape(n, K, -1), tuple(w[p] for p in group), x[i_in])
        # cut into paths on an axis of their own: the gradient then keeps the same
        # layout (fewer XLA instructions than cutting the flat last axis)
        summed = summed.reshape(n, 2 * l_sh + 1, len(group), dim_in, -1)
        blocks = split_pieces(summed, [1] * len(group), axis=2)
        for p, block in zip(group, blocks):
            t = paths[p]
            block = block.reshape(n, 2 * l_sh + 1, dim_in, t.mul)
            cg = conv_clebsch_gordan((dim_in - 1) // 2, l_sh, t.l_out) * math.sqrt(2 * t.l_out + 1)
            if dim_in == 1:  # scalar inputs: the coupling is a multiple of the identity
                assert np.allclose(cg[0], cg[0, 0, 0] * np.eye(2 * l_sh + 1), atol=1e-12)
                out[p] = (block[:, :, 0] * float(cg[0, 0, 0])).transpose(0, 2, 1).reshape(n, -1)
            else:
                out[p] = jnp.einsum("nbac,abm->ncm", block, jnp.asarray(cg, dtype)).reshape(n, -1)
    return jnp.concatenate(out, axis=-1)


def node_major_messages(
    node_blocks: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    neighbours: jnp.ndarray,
    sh: Sequence[jnp.ndarray],
    radial_data,
    radial_fn,
    paths: Sequence[TPPath],
    slots: int | None = None,
    pairs: jnp.ndarray | None = None,
    node_fn=None,
    node_data=None,
):
    """`chunked_messages` over a receiver-major neighbour matrix, without a scatter.

    neighbours: [n_nodes, K] edge ids of each node's incoming edges, padded with
    n_edges (a slot with no edge). The sum over a node's edges is then a contraction
    over K, done as one batched matmul per (input irrep, spherical-harmonic degree):

        msg[i, c, M3] = sum_ab CG[a, b, M3] sum_k (w[ik, c] x[s_ik, c, a]) Y[ik, b]

    so the per-edge message (channels x irrep dims, 2048-5120 numbers in MACE-MP-0)
    is never formed, and no scatter-add (slow on CPU) is needed: the per-edge tensors
    are w * x (channels x input dims) and the harmonics. Nodes are taken `slots // K`
    at a time (a scan; the backward pass recomputes each step), all at once when they
    fit (a training batch, a cell of a few hundred atoms). In that one step, `pairs`
    ([2, n_pairs], `Graph.edge_pairs`) halves the radial MLP: it runs once per pair of
    opposite edges (`pair_weights_in_slots`). Same arguments and result as
    `chunked_messages`, one block `[n_nodes, mul, 2l3+1]` per path, mapped by
    `node_fn(blocks, data)` (row by row; data: the same rows of `node_data`, a pytree
    of [n_nodes, ...] arrays) when given: the result is then node_fn's, rows of any
    pytree. In steps, `node_fn` runs inside each step: a linear map to fewer channels
    than the paths have then keeps the full-width messages and their gradient (5120
    numbers a node in MACE-MP-0 medium, 2 GB each for 10^5 atoms) to one step's rows.

    `sh` None streams the edge embedding: `radial_data` then holds what it is computed
    from and `radial_fn(rows)` returns (harmonics, radial weights) of the rows, zero in
    empty slots (rows of zeros); every step embeds its own slots, so no per-edge
    harmonics or radial basis (nor their gradients) exist for all edges at once.
    """
    if node_fn is None:

        def node_fn(blocks, data):
            return list(blocks)

    n_edges = senders.shape[0]
    n_nodes, K = neighbours.shape
    if slots is None:
        slots = backend_chunk(node_major_slots(node_blocks, paths), EDGE_CHUNK_ACCELERATOR)
    n_steps, per_step = even_chunks(n_nodes, max(1, min(slots // max(K, 1), n_nodes)))
    pad = n_steps * per_step - n_nodes
    ids = jnp.pad(neighbours, ((0, pad), (0, 0)), constant_values=n_edges).reshape(n_steps, per_step * K)
    streamed = sh is None
    sh = None if streamed else tuple(sh)

    def rows_of(a, e):
        """a[e] with zeros where e == n_edges (an empty slot): a gather that fills out of
        bounds reads no copy of `a` with a zero row appended (per-edge arrays of
        ~10^7 rows in a 10^5-atom cell), and its transpose drops those rows."""
        return jnp.take(a, e, axis=0, mode="fill", fill_value=0)

    # paths grouped by (input irrep, harmonic): the paths of a group share the sender
    # features and the harmonics and differ only in their radial weights, so their
    # products w * x come out of one broadcast multiply, straight into the layout the
    # sum over neighbour slots reads (no concatenate), and each input's gradient is a
    # sum over few groups
    groups = defaultdict(list)
    for p, t in enumerate(paths):
        groups[(t.i_in, t.l_sh)].append(p)

    channels_last = [b.transpose(0, 2, 1) for b in node_blocks]  # node rows: cheap next to the slots'

    def step(e, sh_slots, w):
        """e: [per_step * K] edge ids; sh_slots, w: the harmonics and the radial weights
        (one [per_step * K, mul] per path) of those slots, zero in empty ones."""
        x = [b[rows_of(senders, e)] for b in channels_last]  # [slots, 2l1+1, mul]; an empty slot reads node 0
        return slot_messages(x, sh_slots, w, groups, paths, per_step, K)

    def gathered(e):  # plain gathers of the slots' rows; the radial MLP over the slots
        if streamed:
            return step(e, *radial_fn(jax.tree_util.tree_map(lambda a: rows_of(a, e), radial_data)))
        sh_slots, rows = jax.tree_util.tree_map(lambda a: rows_of(a, e), (sh, radial_data))
        return step(e, sh_slots, radial_fn(rows))

    if n_steps > 1:
        data = jax.tree_util.tree_map(
            lambda a: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)).reshape(n_steps, per_step, *a.shape[1:]),
            node_data,
        )
        out = jax.lax.map(jax.checkpoint(lambda x: node_fn(path_blocks(gathered(x[0]), paths), x[1])), (ids, data))
        return jax.tree_util.tree_map(lambda b: b.reshape(n_steps * per_step, *b.shape[2:])[:n_nodes], out)
    # One step: no loop, and nothing recomputed in the backward passes. The radial MLP
    # runs over the edge pairs, or over the edges when they are fewer than the slots
    # (in-degrees that vary, as in most training sets), and its rows are moved into
    # the slots by permutations.
    e = ids[0]
    n_slots = e.shape[0]
    use_pairs = pairs is not None and pairs.shape[1] < min(n_edges, n_slots) and not streamed
    if streamed or (not use_pairs and n_edges >= n_slots):
        return node_fn(path_blocks(gathered(e)[:n_nodes], paths), node_data)
    slot_of_edge = _positions(e, n_edges)
    sh_slots = tuple(_permute_rows(a, e, slot_of_edge) for a in sh)
    if use_pairs:
        w = pair_weights_in_slots(radial_data, radial_fn, pairs, e, slot_of_edge)
    else:
        w = [_permute_rows(a, e, slot_of_edge) for a in radial_fn(radial_data)]
    return node_fn(path_blocks(step(e, sh_slots, w)[:n_nodes], paths), node_data)


def messages(
    node_blocks: Sequence[jnp.ndarray],
    senders: jnp.ndarray,
    receivers: jnp.ndarray,
    neighbours: jnp.ndarray | None,
    sh: Sequence[jnp.ndarray],
    radial_data,
    radial_fn,
    paths: Sequence[TPPath],
    backend: str = "xla",
    pairs: jnp.ndarray | None = None,
    node_fn=None,
    node_data=None,
):
    """The summed messages of every node: `node_major_messages` when the graph has a
    neighbour matrix (every batch jaxtl builds), else `chunked_messages`; with
    backend "cueq", one cuEquivariance call over all edges (`jaxtl.model.cueq`).

    sh: harmonics [n_edges, 2l2+1] per l2; radial_data: pytree of per-edge arrays;
    radial_fn: rows of radial_data -> radial weights, one [rows, mul] per path; pairs:
    `Graph.edge_pairs` or None (only for a radial_data symmetric under edge reversal);
    node_fn: (blocks, rows of node_data) -> rows of any pytree, applied to the node
    messages row by row (in `node_major_messages`, inside its steps), or None. sh None: the embedding is
    streamed (see `node_major_messages`; neighbour matrix and XLA backend only).
    """
    if sh is None and (backend == "cueq" or neighbours is None):
        raise ValueError("a streamed edge embedding needs the neighbour matrix and the xla backend")
    if backend == "cueq":
        out = cueq.conv_messages(node_blocks, senders, receivers, sh, radial_data, radial_fn, paths)
        return out if node_fn is None else node_fn(out, node_data)
    if neighbours is not None:
        return node_major_messages(
            node_blocks,
            senders,
            neighbours,
            sh,
            radial_data,
            radial_fn,
            paths,
            pairs=pairs,
            node_fn=node_fn,
            node_data=node_data,
        )
    n_nodes = node_blocks[0].shape[0]
    out = chunked_messages(node_blocks, senders, receivers, n_nodes, sh, radial_data, radial_fn, paths)
    return out if node_fn is None else node_fn(out, node_data)
