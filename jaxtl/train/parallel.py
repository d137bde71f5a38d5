"""Data parallelism by stacking: k padded batches -> one `Batch` with a leading device axis.

A padded `Batch` is one big graph, so it cannot be split along its graph axis
without re-indexing; instead k batches of the same padded shape are stacked
along a new leading axis and that axis is sharded over a 1-d device mesh
(`DATA`). Each device runs the model on its batches; sums of loss terms and
gradients are added over the mesh (`jax.lax.psum`). With one device the same
code runs on a mesh of one. The batches of one step must have the same padded
shape, so `step_plan` groups the epoch's batches by shape (a fixed, small set:
see `jaxtl.graph.dataset`). In a multi-process job the mesh spans every
process's devices and each process pads and stacks only the batches of its own
devices (`jaxtl.train.distributed`).

Data items are `Batch`es, or `(Batch, config_types)` with the config_type of each
graph (host-side data for per-config_type metrics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxtl.graph.labels import Batch, Labels

DATA = "data"


def make_mesh(n_devices: int = 1) -> Mesh:
    """A 1-d mesh over `n_devices` devices.

    In a single process: its first `n_devices` local devices. In a multi-process job
    (`jaxtl.train.distributed`): all devices of all processes, ordered by process so
    that each process's devices are one contiguous block of the data axis;
    `n_devices` must then be their total number.
    """
    if jax.process_count() > 1:
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        if n_devices != len(devices):
            raise ValueError(
                f"a job of {jax.process_count()} processes trains on all their {len(devices)} devices; "
                f"set n_devices={len(devices)} (got {n_devices})"
            )
        return Mesh(np.array(devices), (DATA,))
    devices = jax.local_devices()
    if n_devices > len(devices):
        raise ValueError(f"asked for {n_devices} devices but only {len(devices)} are available")
    return Mesh(np.array(devices[:n_devices]), (DATA,))


def local_block(mesh: Mesh) -> range:
    """Positions along the data axis of this process's devices (all of them in a single process)."""
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    if not mine or mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError("this process's devices must form one contiguous block of the mesh")
    return range(mine[0], mine[-1] + 1)


def split_item(item) -> tuple[Batch, Sequence[str] | None]:
    """(batch, config_types or None) from a data item."""
    if isinstance(item, Batch):
        return item, None
    batch, config_types = item
    return batch, config_types


def cast_batch(batch: Batch, dtype) -> Batch:
    """Host copy of `batch` as numpy, floating arrays cast to `dtype`."""

    def cast(x):
        x = np.asarray(x)
        return x.astype(dtype) if np.issubdtype(x.dtype, np.floating) else x

    return jax.tree.map(cast, batch)


def blank_batch(batch: Batch) -> Batch:
    """A batch of the same shapes holding no real structure (fills an incomplete group)."""
    g, lab = batch.graph, batch.labels
    graph = g._replace(
        node_mask=np.zeros_like(np.asarray(g.node_mask)), graph_mask=np.zeros_like(np.asarray(g.graph_mask))
    )
    labels = Labels(*(np.zeros_like(np.asarray(x)) for x in lab))
    return Batch(graph, labels)


def stack_batches(batches: Sequence[Batch], keep_optional: dict | None = None) -> Batch:
    """Stack batches of identical shapes along a new leading axis.

    If some batch lists too many elements for `Graph.elements`, none of them keeps
    the list (the model then finds the elements itself); likewise `Graph.edge_pairs`.
    `keep_optional` ({field: bool}) overrides that choice (all processes of a job
    must make the same one, or their programs would differ).
    """
    for field in OPTIONAL_FIELDS:
        keep = all(getattr(b.graph, field) is not None for b in batches)
        if keep_optional is not None:
            keep = keep_optional[field]
        if not keep:
            batches = [Batch(b.graph._replace(**{field: None}), b.labels) for b in batches]
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(b)) for b in batches}
    if len(shapes) > 1:
        raise ValueError(
            "batches of one data-parallel step must have the same padded shapes; "
            "pad every batch to the same n_nodes/n_edges/n_graphs"
        )
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)


OPTIONAL_FIELDS = ("elements", "edge_pairs")


def shape_key(batch: Batch) -> tuple:
    """The padded shape of a batch (n_nodes, n_edges, n_graphs, neighbour width): one compilation each."""
    g = batch.graph
    return tuple(np.shape(x) for x in (g.positions, g.senders, g.cell, g.neighbours))


def step_plan(keys: Sequence, k: int) -> list[list[int | None]]:
    """Data-parallel steps of `k` item indices with equal shape keys, in order of completion.

    Items are taken in order; an item joins the open step of its shape, and a step is
    emitted when it holds k items, so with k = 1 the order is the items'. The open
    steps left at the end are completed with None (a blank batch). The plan depends
    only on the keys, so every process of a job computes the same one.
    """
    open_steps: dict = {}
    steps = []
    for i, key in enumerate(keys):
        step = open_steps.setdefault(key, [])
        step.append(i)
        if len(step) == k:
            steps.append(step)
            del open_steps[key]
    steps.extend(step + [None] * (k - len(step)) for step in open_steps.values())
    return steps


def _shape_keys(items: Sequence) -> list:
    if hasattr(items, "shape_key"):  # a lazy source knows its shapes without padding
        return [items.shape_key(i) for i in range(len(items))]
    return [shape_key(split_item(item)[0]) for item in items]


def _config_types(items: Sequence, i: int):
    if hasattr(items, "config_types"):
        return items.config_types(i)
    return split_item(items[i])[1]


def _agreed_optional_fields(have: np.ndarray) -> dict:
    """{field: keep} agreed by all processes: a field is kept if every process's batches have it
    (`have`: [len(OPTIONAL_FIELDS)] whether this process's do)."""
    from jax.experimental import multihost_utils

    every = np.asarray(multihost_utils.process_allgather(have)).reshape(-1, len(OPTIONAL_FIELDS)).min(axis=0)
    return {f: bool(v) for f, v in zip(OPTIONAL_FIELDS, every)}


def host_steps(items: Sequence, k: int, block: range, dtype, start: int = 0) -> Iterator[tuple]:
    """The host side of `group_batches`: (item indices, this process's stacked Batch [len(block), ...],
    whether its batches all have each optional field, config_types per slot) of each step from
    step `start` on.

    Pure host work (reading, padding, casting, stacking) that touches no device and no
    other process, so it may run on a background thread (`jaxtl.train.prefetch`).
    """
    for step in step_plan(_shape_keys(items), k)[start:]:
        mine = [step[i] for i in block]
        local = {j: cast_batch(split_item(items[j])[0], dtype) for j in mine if j is not None}
        if not local:  # this process's slots are all blank: shapes from the step's first batch
            template = cast_batch(split_item(items[step[0]])[0], dtype)
        else:
            template = next(iter(local.values()))
        stack = [blank_batch(template) if j is None else local[j] for j in mine]
        have = np.array([all(getattr(b.graph, f) is not None for b in stack) for f in OPTIONAL_FIELDS], np.int32)
        types = [None if j is None else _config_types(items, j) for j in step]
        yield [j for j in step if j is not None], stack_batches(stack), have, types


def group_batches(
    items: Iterable, mesh: Mesh | int, dtype, prefetch: int = 0, start: int = 0
) -> Iterator[tuple[list[int], Batch, list]]:
    """Data-parallel steps as (item indices, stacked Batch, config_types per slot).

    items: Batches or (Batch, config_types), or a lazy sequence of them (with
    `shape_key(i)` and `config_types(i)`, so that only this process's items are padded).
    mesh: the data mesh (or, for a single process, its size k). Each step holds k
    items of one padded shape (`step_plan`); slots left over are blank batches,
    which add nothing. In a multi-process job every process takes the slots of its
    own devices and the stacked Batch is a global array sharded over the mesh; in
    a single process it is a host array [k, ...].
    prefetch: steps prepared ahead on a background thread (`jaxtl.train.prefetch.Prefetch`);
    the steps and their order are the same for every value. Close the generator (or
    exhaust it) to stop the thread.
    start: the first step to give (the earlier ones are neither read nor padded).
    """
    from jaxtl.train.prefetch import Prefetch

    k = mesh if isinstance(mesh, int) else mesh.size
    multi = not isinstance(mesh, int) and jax.process_count() > 1
    block = local_block(mesh) if multi else range(k)
    if not hasattr(items, "__getitem__") or not hasattr(items, "__len__"):
        items = list(items)
    sharding = NamedSharding(mesh, P(DATA)) if multi else None

    def global_array(x):
        return jax.make_array_from_process_local_data(sharding, x, (k,) + x.shape[1:])

    with Prefetch(host_steps(items, k, block, dtype, start), prefetch) as steps:
        for indices, stacked, have, types in steps:
            if multi:  # collectives stay on this thread, in the same order on every process
                agreed = _agreed_optional_fields(have)
                drop = {f: None for f in OPTIONAL_FIELDS if not agreed[f]}
                stacked = jax.tree.map(global_array, Batch(stacked.graph._replace(**drop), stacked.labels))
            yield indices, stacked, types


def replicate(tree, mesh: Mesh):
    """`tree` placed whole on every device of the mesh (as the steps return the state).

    In a multi-process job the leaves go through host memory: every process holds
    the same values, and a jax array already on one local device would otherwise
    become a global array whose shards Orbax cannot read.
    """
    sharding = NamedSharding(mesh, P())
    if jax.process_count() > 1:
        tree = jax.tree.map(np.asarray, tree)
    return jax.device_put(tree, sharding)
