"""Training sets larger than memory: structures with their neighbour lists in sharded HDF5 files.

`write_ondisk` (the `jaxtl prepare` command) streams structures from extxyz / ASE
files, computes each neighbour list once, and writes shards of `shard_size`
structures; `OnDiskDataset` reads one structure at a time, so training memory is
one batch of arrays plus a few integers per structure (sizes, offsets, in-degree,
config type: about 40 bytes, e.g. 64 MB for MPtrj's 1.6 million structures),
whatever the dataset's size. `streamed_batches` gives the epochs the training loop
consumes: the same plan (`plan_batches`, budgets from the sizes of the whole set)
and the same padded batches as the in-memory path, each padded only when a process
asks for it, so a process of a multi-process job reads only its own share.

Why HDF5 (h5py): a structure is a slice of a few contiguous arrays (its atoms'
rows, its edges' rows, its graph row), and HDF5 reads such slices from
uncompressed, unchunked datasets with one seek each, from any process, without a
server or a record schema; it is self-describing (`h5ls` shows a shard), the format
mace-torch's preprocessing writes, and h5py is already installed wherever mace is.
grain with array_record would add two dependencies and serialise each structure as
an opaque record, for a random-access pattern HDF5 already serves.

Layout of a prepared folder:
    meta.json          format, r_max, heads, config types, shards, sources
    shard-00000.h5     n_nodes, n_edges, max_in_degree, config_type [S];
                       node_offsets, edge_offsets [S + 1];
                       nodes [atoms, 7] float64: positions, forces, atomic number;
                       edges [edges, 5] int32: sender, receiver (within the
                       structure), unit shift; graphs [S, 34] float64: cell, energy,
                       stress, virials, the five label weights, head index.
Three reads per structure (one per table) keep streaming within a few ms a batch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxtl.graph.batching import Budget, graph_from_configuration, pad_batch
from jaxtl.graph.dataset import Budgets, choose_budgets, plan_batches
from jaxtl.graph.graph import Graph
from jaxtl.graph.io import Configuration, DataError, DataKeys, configuration_from_atoms
from jaxtl.graph.labels import Batch, Labels
from jaxtl.graph.neighbours import neighbour_list

FORMAT = "jaxtl-ondisk-v2"
# (field, columns) of each table, in column order
NODE_COLUMNS = (("positions", 3), ("forces", 3), ("atomic_numbers", 1))
EDGE_COLUMNS = (("senders", 1), ("receivers", 1), ("unit_shifts", 3))
GRAPH_COLUMNS = (
    ("cell", 9),
    ("energy", 1),
    ("stress", 9),
    ("virials", 9),
    ("weight", 1),
    ("energy_weight", 1),
    ("forces_weight", 1),
    ("stress_weight", 1),
    ("virials_weight", 1),
    ("head", 1),
)
# fields of an unpadded item that follow from its size
DERIVED = {"node_graph", "n_node", "node_mask", "graph_mask"}


def _table(item: Batch, columns, rows: int, dtype) -> np.ndarray:
    fields = {**item.graph._asdict(), **item.labels._asdict()}
    return np.concatenate(
        [np.asarray(fields[f], np.float64).reshape(rows, width) for f, width in columns], axis=1
    ).astype(dtype)


def _columns(table: np.ndarray, columns) -> dict[str, np.ndarray]:
    out, at = {}, 0
    for field, width in columns:
        out[field] = table[:, at : at + width]
        at += width
    return out


def iter_configurations(
    paths: Sequence[str | os.PathLike], keys: DataKeys | None = None, require: Sequence[str] = ()
) -> Iterator[Configuration]:
    """The frames of structure files one at a time (a file is never held whole)."""
    import ase.io

    keys = DataKeys() if keys is None else keys

    for path in map(os.fspath, paths):
        if not os.path.isfile(path):
            raise DataError(f"{path}: no such file")
        frame = 0
        try:
            for frame, atoms in enumerate(ase.io.iread(path, index=":")):
                yield configuration_from_atoms(atoms, keys, source=path, index=frame, require=require)
        except DataError:
            raise
        except Exception as err:  # ASE raises many kinds for malformed files
            raise DataError(f"{path}, frame {frame}: cannot be read ({type(err).__name__}: {err})") from err


def write_ondisk(
    configs: Iterable[Configuration],
    out_dir: str | os.PathLike,
    r_max: float,
    shard_size: int = 10_000,
    heads: Sequence[str] | None = None,
    sources: Sequence[str] = (),
) -> Path:
    """Write `configs` (any iterable, consumed once) as a prepared folder; returns its path.

    Args:
        configs: the structures with their labels.
        out_dir: the folder (created; must not hold a prepared set already).
        r_max: cutoff of the neighbour lists in A (the model's r_max).
        shard_size: structures per HDF5 file.
        heads: head names in model order; None: in order of first appearance.
        sources: file names recorded in meta.json.
    """
    import h5py

    out = Path(out_dir)
    if (out / "meta.json").exists():
        raise FileExistsError(f"{out} already holds a prepared dataset")
    out.mkdir(parents=True, exist_ok=True)
    head_index = {h: i for i, h in enumerate(heads or ())}
    fixed_heads = heads is not None
    config_types: dict[str, int] = {}
    shards: list[dict] = []
    buffer: list[tuple[Batch, int]] = []

    def flush():
        name = f"shard-{len(shards):05d}.h5"
        _write_shard(h5py, out / name, buffer)
        shards.append({"file": name, "n": len(buffer)})
        buffer.clear()

    for c in configs:
        if c.head not in head_index:
            if fixed_heads:
                raise DataError(f"{c.where}: head '{c.head}' is not one of {tuple(heads)}")
            head_index[c.head] = len(head_index)
        edges = neighbour_list(c.positions, c.cell, c.pbc, r_max)
        item = graph_from_configuration(c, r_max, head_index[c.head], edges)
        buffer.append((item, config_types.setdefault(c.config_type, len(config_types))))
        if len(buffer) == shard_size:
            flush()
    if buffer:
        flush()
    if not shards:
        raise DataError(f"no structures to write into {out}")
    meta = {
        "format": FORMAT,
        "r_max": float(r_max),
        "heads": list(head_index) or ["Default"],
        "config_types": list(config_types),
        "shards": shards,
        "n_structures": sum(s["n"] for s in shards),
        "sources": [os.fspath(s) for s in sources],
    }
    tmp = out / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")  # the folder counts as prepared only once complete
    return out


def _write_shard(h5py, path: Path, entries: list[tuple[Batch, int]]) -> None:
    items = [item for item, _ in entries]
    n_nodes = np.array([it.graph.positions.shape[0] for it in items], np.int64)
    n_edges = np.array([it.graph.senders.shape[0] for it in items], np.int64)
    degree = [int(np.bincount(it.graph.receivers).max(initial=0)) if len(it.graph.receivers) else 0 for it in items]
    stored = {f for f, _ in NODE_COLUMNS + EDGE_COLUMNS + GRAPH_COLUMNS} | DERIVED
    extra = [
        f
        for f, v in {**items[0].graph._asdict(), **items[0].labels._asdict()}.items()
        if v is not None and f not in stored
    ]
    if extra:
        raise ValueError(f"{path}: the on-disk format does not store the item fields {extra}")
    for it in items:
        if np.any(np.asarray(it.graph.unit_shifts) != np.rint(it.graph.unit_shifts)):
            raise ValueError(f"{path}: a unit shift is not an integer")
    with h5py.File(path.with_suffix(".tmp"), "w") as f:
        f["n_nodes"], f["n_edges"] = n_nodes, n_edges
        f["max_in_degree"] = np.array(degree, np.int64)
        f["config_type"] = np.array([t for _, t in entries], np.int32)
        f["node_offsets"] = np.concatenate([[0], np.cumsum(n_nodes)])
        f["edge_offsets"] = np.concatenate([[0], np.cumsum(n_edges)])
        f["nodes"] = np.concatenate([_table(it, NODE_COLUMNS, n, np.float64) for it, n in zip(items, n_nodes)])
        f["edges"] = np.concatenate([_table(it, EDGE_COLUMNS, e, np.int32) for it, e in zip(items, n_edges)])
        f["graphs"] = np.concatenate([_table(it, GRAPH_COLUMNS, 1, np.float64) for it in items])
    os.replace(path.with_suffix(".tmp"), path)


class OnDiskDataset:
    """A prepared folder, read one structure at a time.

    Attributes (in memory, a few integers per structure):
        n_nodes, n_edges: [n] int64 sizes; max_in_degree: the largest of the set;
        r_max, heads, config_types (names), path.
    """

    def __init__(self, path: str | os.PathLike):
        import h5py

        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            raise DataError(f"{self.path}: not a prepared dataset (no meta.json; run `jaxtl prepare`)")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise DataError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}")
        self.r_max = float(meta["r_max"])
        self.heads = tuple(meta["heads"])
        self.config_types = tuple(meta["config_types"])
        self._files = [self.path / s["file"] for s in meta["shards"]]
        sizes, offsets, type_ids, degree = [], [], [], 0
        for file, shard in zip(self._files, meta["shards"]):
            with h5py.File(file, "r") as f:
                if len(f["n_nodes"]) != shard["n"]:
                    raise DataError(f"{file}: holds {len(f['n_nodes'])} structures, meta.json says {shard['n']}")
                sizes.append((f["n_nodes"][:], f["n_edges"][:]))
                offsets.append((f["node_offsets"][:], f["edge_offsets"][:]))
                type_ids.append(f["config_type"][:])
                degree = max(degree, int(f["max_in_degree"][:].max(initial=0)))
        self.n_nodes = np.concatenate([s[0] for s in sizes])
        self.n_edges = np.concatenate([s[1] for s in sizes])
        self.max_in_degree = degree
        self._type_id = np.concatenate(type_ids)
        self._offsets = offsets
        counts = [len(s[0]) for s in sizes]
        self._shard = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        self._first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._open: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.n_nodes)

    def config_type(self, i: int) -> str:
        return self.config_types[self._type_id[i]]

    def _tables(self, shard: int):
        """(nodes, edges, graphs) datasets of a shard, opened on first use."""
        if shard not in self._open:
            import h5py

            f = h5py.File(self._files[shard], "r")
            self._open[shard] = (f, f["nodes"], f["edges"], f["graphs"])
        return self._open[shard][1:]

    def _rows(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(node rows [n, 7], edge rows [e, 5], graph row [1, 34]) of structure `i`: three reads."""
        shard = int(self._shard[i])
        j = int(i - self._first[shard])
        node_table, edge_table, graph_table = self._tables(shard)
        node_offsets, edge_offsets = self._offsets[shard]
        return (
            node_table[node_offsets[j] : node_offsets[j + 1]],
            edge_table[edge_offsets[j] : edge_offsets[j + 1]],
            graph_table[j : j + 1],
        )

    def item(self, i: int) -> Batch:
        """Structure `i` as the unpadded single-graph Batch `graph_from_configuration` gives."""
        return self.gather([i])

    def gather(self, indices: Sequence[int]) -> Batch:
        """Structures `indices` as one unpadded Batch of len(indices) graphs, in that order.

        `pad_batch([dataset.gather(members)], ...)` is `pad_batch([dataset.item(i) for i in
        members], ...)` bit for bit, but builds the arrays of a batch once from its
        concatenated table rows instead of once per structure (the per-structure arrays
        cost more host time than the reads).
        """
        rows = [self._rows(int(i)) for i in indices]
        n_node = np.array([len(r[0]) for r in rows], np.int32)
        n_edge = np.array([len(r[1]) for r in rows], np.int64)
        nodes = _columns(np.concatenate([r[0] for r in rows]), NODE_COLUMNS)
        edges = _columns(np.concatenate([r[1] for r in rows]), EDGE_COLUMNS)
        row = _columns(np.concatenate([r[2] for r in rows]), GRAPH_COLUMNS)
        n, g = int(n_node.sum()), len(rows)
        # edges are stored within their structure: offset them by the nodes before it
        node_offset = np.repeat(np.concatenate([[0], np.cumsum(n_node)[:-1]]), n_edge).astype(np.int32)
        graph = Graph(
            positions=np.ascontiguousarray(nodes["positions"]),
            atomic_numbers=nodes["atomic_numbers"][:, 0].astype(np.int32),
            senders=edges["senders"][:, 0] + node_offset,
            receivers=edges["receivers"][:, 0] + node_offset,
            unit_shifts=edges["unit_shifts"].astype(np.float64),
            cell=row["cell"].reshape(g, 3, 3).copy(),
            node_graph=np.repeat(np.arange(g, dtype=np.int32), n_node),
            n_node=n_node,
            head=row["head"][:, 0].astype(np.int32),
            node_mask=np.ones(n, bool),
            graph_mask=np.ones(g, bool),
        )
        labels = Labels(
            energy=row["energy"][:, 0].copy(),
            forces=np.ascontiguousarray(nodes["forces"]),
            stress=row["stress"].reshape(g, 3, 3).copy(),
            virials=row["virials"].reshape(g, 3, 3).copy(),
            **{
                f: row[f][:, 0].copy()
                for f in ("weight", "energy_weight", "forces_weight", "stress_weight", "virials_weight")
            },
        )
        return Batch(graph, labels)

    def close(self) -> None:
        for f, *_ in self._open.values():
            f.close()
        self._open.clear()


class StreamedBatches(Sequence):
    """The (Batch, config_types) of one epoch plan over an `OnDiskDataset`, read and padded
    when indexed (see `jaxtl.train.parallel.group_batches`)."""

    def __init__(self, dataset: OnDiskDataset, plan: list[tuple[Budget, list[int]]], dtype=np.float64):
        self.dataset, self.plan, self.dtype = dataset, plan, dtype

    def __len__(self) -> int:
        return len(self.plan)

    def shape_key(self, i: int) -> Budget:
        return self.plan[i][0]

    def config_types(self, i: int) -> list[str]:
        return [self.dataset.config_type(j) for j in self.plan[i][1]]

    def __getitem__(self, i: int):
        budget, members = self.plan[i]
        batch = pad_batch(
            [self.dataset.gather(members)],
            *budget[:3],
            r_max=self.dataset.r_max,
            dtype=self.dtype,
            n_neighbour=budget.n_neighbour,
        )
        return batch, self.config_types(i)


def streamed_batches(
    dataset: OnDiskDataset,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    budgets: Budgets | None = None,
    dtype=np.float64,
):
    """epoch -> `StreamedBatches` in an order fixed by (seed, epoch); the same plan and
    budgets as `jaxtl.train.data.epoch_batches` on the same structures in memory."""
    budgets = budgets or choose_budgets(dataset, batch_size)

    def at(epoch: int) -> StreamedBatches:
        plan = plan_batches(dataset.n_nodes, dataset.n_edges, batch_size, budgets, shuffle, seed, epoch)
        return StreamedBatches(dataset, plan, dtype)

    at.budgets = budgets  # type: ignore[attr-defined]
    return at
