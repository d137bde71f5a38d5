"""Datasets of graphs, padding budgets and the epoch batch iterator (host side).

Budget policy (`choose_budgets`), for batches of `batch_size` structures:

- n_graph = batch_size + 1 (one padding graph).
- The main node capacity is mean + 2 sigma of the total size of `batch_size` random
  structures, B * mean(n) + 2 * sqrt(B) * std(n), at least the 95 % quantile of a single
  structure, plus one padding node; edges likewise (without the +1). Both are rounded up
  by `round_capacity` (four steps per power of two by default).
- A structure that does not fit the main budget alone is *oversize*: it gets the main
  node and edge capacities both scaled by the smallest factor f on the grid
  {5/4, 6/4, 7/4, 2, 5/2, 3, 7/2, 4, 5, ...} (four steps per doubling) that fits it, and is
  packed only with oversize structures of the same budget. An epoch thus uses the main
  shape plus at most `steps_per_octave` shapes per doubling of structure size above it,
  whatever the dataset.
- Size tiers (`tiers`, default 4): a closed batch of main-budget structures is padded to
  the smallest of the budgets main * k / tiers (k = 1..tiers, nodes and edges scaled
  together) that holds it, so batches of small structures do not carry the padding of
  the largest. An epoch then uses at most `tiers` main shapes; `tiers=1` gives one.

`batch_iterator` packs greedily in a shuffled order: a batch is closed when it holds
`batch_size` structures or the next one does not fit. The order depends only on
(seed, epoch), so a resumed run sees the same batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence

import numpy as np

from jaxtl.graph.batching import (
    Budget,
    graph_from_configuration,
    max_in_degree,
    neighbour_width,
    pad_batch,
    round_capacity,
)
from jaxtl.graph.io import Configuration
from jaxtl.graph.labels import Batch
from jaxtl.graph.neighbours import neighbour_list

_PROGRESS_THRESHOLD = 1000


def _structure_hash(configs: Sequence[Configuration], r_max: float) -> str:
    digest = hashlib.sha256(f"jaxtl-neighbours-v1 r_max={float(r_max)!r}".encode())
    for c in configs:
        for array in (c.atomic_numbers, c.positions, c.cell, np.asarray(c.pbc)):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:32]


class GraphDataset:
    """Structures with their neighbour lists, computed once.

    Args:
        configs: the structures.
        r_max: cutoff in A.
        heads: head names in model order; a structure's `head` is looked up there.
            None: the heads in order of first appearance.
        cache_dir: if given, neighbour lists are saved there (npz) under a hash of the
            structures (numbers, positions, cells, pbc) and r_max, and reloaded.
        progress: show a tqdm bar when there are many structures.
    """

    def __init__(
        self,
        configs: Sequence[Configuration],
        r_max: float,
        heads: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ):
        self.configs = list(configs)
        self.r_max = float(r_max)
        if heads is None:
            heads = list(dict.fromkeys(c.head for c in self.configs)) or ["Default"]
        self.heads = tuple(heads)
        head_index = {h: i for i, h in enumerate(self.heads)}
        for c in self.configs:
            if c.head not in head_index:
                raise ValueError(f"{c.where}: head '{c.head}' is not one of {self.heads}")
        edges = self._neighbour_lists(cache_dir, progress)
        self.items = [
            graph_from_configuration(c, self.r_max, head_index[c.head], e) for c, e in zip(self.configs, edges)
        ]
        self.n_nodes = np.array([c.n_atoms for c in self.configs], dtype=np.int64)
        self.n_edges = np.array([len(e[0]) for e in edges], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Batch:
        return self.items[index]

    def _neighbour_lists(self, cache_dir, progress):
        path = None
        if cache_dir is not None:
            os.makedirs(cache_dir, exist_ok=True)
            path = os.path.join(cache_dir, f"neighbours-{_structure_hash(self.configs, self.r_max)}.npz")
            if os.path.exists(path):
                with np.load(path) as data:
                    bounds = data["offsets"]
                    s, r, u = data["senders"], data["receivers"], data["unit_shifts"]
                if len(bounds) == len(self.configs) + 1:
                    return [(s[a:b], r[a:b], u[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        iterable = self.configs
        if progress and len(self.configs) >= _PROGRESS_THRESHOLD:
            from tqdm.auto import tqdm

            iterable = tqdm(iterable, desc=f"neighbour lists (r_max={self.r_max} A)", unit="structure", disable=None)
        edges = [neighbour_list(c.positions, c.cell, c.pbc, self.r_max) for c in iterable]
        if path is not None:
            offsets = np.cumsum([0] + [len(e[0]) for e in edges])
            tmp = path + ".tmp.npz"
            np.savez(
                tmp,
                offsets=offsets,
                senders=np.concatenate([e[0] for e in edges]),
                receivers=np.concatenate([e[1] for e in edges]),
                unit_shifts=np.concatenate([e[2] for e in edges]).reshape(-1, 3),
            )
            os.replace(tmp, path)  # atomic, so concurrent readers never see half a file
        return edges


@dataclasses.dataclass(frozen=True)
class Budgets:
    """The main budget and the rule for oversize structures (see module docstring)."""

    main: Budget
    steps_per_octave: int = 4
    tiers: int = 4

    def tier_for(self, used_nodes: int, used_edges: int) -> Budget:
        """The smallest main-budget tier holding a batch of this many real nodes and edges."""
        for k in range(1, self.tiers + 1):
            budget = Budget(
                n_node=-(-self.main.n_node * k // self.tiers),
                n_edge=-(-self.main.n_edge * k // self.tiers),
                n_graph=self.main.n_graph,
                n_neighbour=self.main.n_neighbour,
            )
            if used_nodes + 1 <= budget.n_node and used_edges <= budget.n_edge:
                return budget
        return self.main

    def fits_main(self, n_node: int, n_edge: int) -> bool:
        return n_node + 1 <= self.main.n_node and n_edge <= self.main.n_edge

    def for_structure(self, n_node: int, n_edge: int) -> Budget:
        """The budget a structure of this size is batched in."""
        if self.fits_main(n_node, n_edge):
            return self.main
        # Scale nodes and edges together by a factor on the rounding grid, so that
        # oversize budgets form one family (not a grid of node x edge combinations).
        steps = self.steps_per_octave
        grid = steps
        while True:
            grid = round_capacity(grid + 1, steps)
            budget = Budget(
                n_node=-(-self.main.n_node * grid // steps),
                n_edge=-(-self.main.n_edge * grid // steps),
                n_graph=self.main.n_graph,
                n_neighbour=self.main.n_neighbour,
            )
            if n_node + 1 <= budget.n_node and n_edge <= budget.n_edge:
                return budget


def choose_budgets(
    dataset: GraphDataset, batch_size: int, steps_per_octave: int = 4, quantile: float = 0.95, tiers: int = 4
) -> Budgets:
    """Budgets for batches of `batch_size` structures of `dataset` (policy: module docstring)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if tiers < 1:
        raise ValueError(f"tiers must be at least 1, got {tiers}")

    def capacity(sizes: np.ndarray) -> int:
        sizes = sizes.astype(np.float64)
        total = batch_size * sizes.mean() + 2.0 * np.sqrt(batch_size) * sizes.std()
        return int(np.ceil(max(total, np.quantile(sizes, quantile))))

    main = Budget(
        n_node=round_capacity(capacity(dataset.n_nodes) + 1, steps_per_octave),
        n_edge=round_capacity(max(capacity(dataset.n_edges), 1), steps_per_octave),
        n_graph=batch_size + 1,
        # one neighbour-matrix width for the whole dataset: it adds no compilations
        # (an on-disk dataset knows its largest in-degree without reading its items)
        n_neighbour=neighbour_width(
            dataset.max_in_degree if hasattr(dataset, "max_in_degree") else max_in_degree(dataset.items),
            steps_per_octave,
        ),
    )
    return Budgets(main=main, steps_per_octave=steps_per_octave, tiers=tiers)


def plan_batches(
    n_nodes: np.ndarray,
    n_edges: np.ndarray,
    batch_size: int,
    budgets: Budgets,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
) -> list[tuple[Budget, list[int]]]:
    """The batches of one epoch as (budget, structure indices), greedy in shuffled order."""
    n = len(n_nodes)
    if shuffle:
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    else:
        order = np.arange(n)
    open_batches: dict[Budget, tuple[list[int], int, int]] = {}
    plan = []
    for index in order.tolist():
        nodes, edges = int(n_nodes[index]), int(n_edges[index])
        budget = budgets.for_structure(nodes, edges)
        members, used_nodes, used_edges = open_batches.get(budget, ([], 0, 0))
        fits = (
            len(members) < min(batch_size, budget.n_graph - 1)
            and used_nodes + nodes + 1 <= budget.n_node
            and used_edges + edges <= budget.n_edge
        )
        if members and not fits:
            plan.append(_closed(budgets, budget, members, used_nodes, used_edges))
            members, used_nodes, used_edges = [], 0, 0
        open_batches[budget] = (members + [index], used_nodes + nodes, used_edges + edges)
    plan.extend(_closed(budgets, budget, *open_batch) for budget, open_batch in open_batches.items() if open_batch[0])
    return plan


def _closed(budgets: Budgets, budget: Budget, members: list[int], used_nodes: int, used_edges: int):
    """A finished batch: main-budget batches drop to their size tier (oversize keep theirs)."""
    if budget == budgets.main:
        budget = budgets.tier_for(used_nodes, used_edges)
    return budget, members


class EpochBatches:
    """The padded batches of one epoch; iterate to get `Batch`es of numpy arrays.

    Attributes:
        plan: list of (Budget, structure indices).
        shapes: the distinct budgets this epoch uses (one jit compilation each).
        padding_waste: fractions of padded nodes, edges and graphs over the epoch.
    """

    def __init__(self, dataset: GraphDataset, plan, dtype=np.float64):
        self.dataset = dataset
        self.plan = plan
        self.dtype = dtype
        self.shapes = sorted(set(budget for budget, _ in plan))
        totals = np.zeros(3)
        real = np.zeros(3)
        for budget, members in plan:
            totals += budget.n_node, budget.n_edge, budget.n_graph
            real += dataset.n_nodes[members].sum(), dataset.n_edges[members].sum(), len(members)
        waste = 1.0 - real / np.maximum(totals, 1)
        self.padding_waste = {"nodes": float(waste[0]), "edges": float(waste[1]), "graphs": float(waste[2])}

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        for budget, members in self.plan:
            yield pad_batch(
                [self.dataset.items[i] for i in members],
                *budget[:3],
                r_max=self.dataset.r_max,
                dtype=self.dtype,
                n_neighbour=budget.n_neighbour,
            )


def batch_iterator(
    dataset: GraphDataset,
    batch_size: int,
    budgets: Budgets | None = None,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    dtype=np.float64,
) -> EpochBatches:
    """The padded batches of one epoch (see `EpochBatches`); budgets default to `choose_budgets`."""
    if budgets is None:
        budgets = choose_budgets(dataset, batch_size)
    plan = plan_batches(dataset.n_nodes, dataset.n_edges, batch_size, budgets, shuffle, seed, epoch)
    return EpochBatches(dataset, plan, dtype=dtype)
