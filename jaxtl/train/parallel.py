"""Data parallelism by stacking: k padded batches -> one `Batch` with a leading device axis.

A padded `Batch` is one big graph, so it cannot be split along its graph axis
without re-indexing; instead k batches of the same padded shape are stacked
along a new leading axis and that axis is sharded over a 1-d device mesh
(`DATA`). Each device runs the model on its batches; sums of loss terms and
gradients are added over the mesh (`jax.lax.psum`). With one device the same
code runs on a mesh of one.

Data items are `Batch`es, or `(Batch, config_types)` with the config_type of each
graph (host-side data for per-config_type metrics).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxtl.graph.labels import Batch, Labels

DATA = "data"


def make_mesh(n_devices: int = 1) -> Mesh:
    """A 1-d mesh over the first `n_devices` local devices."""
    devices = jax.local_devices()
    if n_devices > len(devices):
        raise ValueError(f"asked for {n_devices} devices but only {len(devices)} are available")
    return Mesh(np.array(devices[:n_devices]), (DATA,))


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
    graph = g._replace(node_mask=np.zeros_like(np.asarray(g.node_mask)),
                       graph_mask=np.zeros_like(np.asarray(g.graph_mask)))
    labels = Labels(*(np.zeros_like(np.asarray(x)) for x in lab))
    return Batch(graph, labels)


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """Stack batches of identical shapes along a new leading axis.

    If some batch lists too many elements for `Graph.elements`, none of them keeps
    the list (the model then finds the elements itself); likewise `Graph.edge_pairs`.
    """
    for field in ("elements", "edge_pairs"):
        if any(getattr(b.graph, field) is None for b in batches):
            batches = [Batch(b.graph._replace(**{field: None}), b.labels) for b in batches]
    shapes = {tuple(np.shape(x) for x in jax.tree.leaves(b)) for b in batches}
    if len(shapes) > 1:
        raise ValueError("batches of one data-parallel step must have the same padded shapes; "
                         "pad every batch to the same n_nodes/n_edges/n_graphs")
    return jax.tree.map(lambda *xs: np.stack(xs), *batches)


def group_batches(items: Iterable, k: int, dtype) -> Iterator[tuple[range, Batch, list]]:
    """Consecutive groups of k items as (batch indices, stacked Batch, config_types per batch).

    The last group is completed with blank batches, which add nothing.
    """
    group: list[Batch] = []
    types: list = []
    start = 0
    for i, item in enumerate(items):
        batch, config_types = split_item(item)
        group.append(cast_batch(batch, dtype))
        types.append(config_types)
        if len(group) == k:
            yield range(start, i + 1), stack_batches(group), types
            group, types, start = [], [], i + 1
    if group:
        n = len(group)
        group += [blank_batch(group[-1]) for _ in range(k - n)]
        types += [None] * (k - n)
        yield range(start, start + n), stack_batches(group), types
