"""GraphDataset, budgets, reproducible epochs and the neighbour-list cache."""

import numpy as np
import pytest

import jaxtl.graph.dataset as dataset_module
from jaxtl.graph import (
    Configuration,
    GraphDataset,
    batch_iterator,
    choose_budgets,
    plan_batches,
    read_configurations,
)
from jaxtl.graph.batching import Budget
from jaxtl.graph.dataset import Budgets

R_MAX = 5.0


def small_dataset(n=40, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    configs = []
    for _ in range(n):
        n_atoms = int(rng.integers(1, 12))
        configs.append(
            Configuration(
                atomic_numbers=np.full(n_atoms, 14, np.int32),
                positions=rng.random((n_atoms, 3)) * 6.0,
                cell=6.0 * np.eye(3),
                pbc=(True, True, True),
                energy=-1.0,
                energy_weight=1.0,
            )
        )
    return GraphDataset(configs, R_MAX, **kwargs)


def test_epochs_are_reproducible_and_cover_everything():
    dataset = small_dataset()
    budgets = choose_budgets(dataset, 4)
    first = batch_iterator(dataset, 4, budgets, seed=3, epoch=2).plan
    again = batch_iterator(dataset, 4, budgets, seed=3, epoch=2).plan
    other = batch_iterator(dataset, 4, budgets, seed=3, epoch=3).plan
    assert first == again
    assert first != other
    for plan in (first, other):
        indices = sorted(i for _, members in plan for i in members)
        assert indices == list(range(len(dataset)))
        assert all(len(members) <= 4 for _, members in plan)
    unshuffled = batch_iterator(dataset, 4, budgets, shuffle=False).plan
    assert [i for _, m in unshuffled for i in m] == list(range(len(dataset)))


def test_batches_have_the_planned_static_shapes():
    dataset = small_dataset()
    epoch = batch_iterator(dataset, 3, seed=0)
    for (budget, members), batch in zip(epoch.plan, epoch):
        graph = batch.graph
        shape = (graph.positions.shape[0], graph.senders.shape[0], graph.cell.shape[0], graph.neighbours.shape[1])
        assert shape == tuple(budget)
        assert graph.graph_mask.sum() == len(members) and not graph.graph_mask[-1]
    waste = epoch.padding_waste
    assert set(waste) == {"nodes", "edges", "graphs"} and all(0 <= v < 1 for v in waste.values())


def test_oversize_structures_get_their_own_budget():
    sizes = np.array([10] * 20 + [100, 300])
    edges = sizes * 30
    budgets = Budgets(main=Budget(64, 2048, 5))
    plan = plan_batches(sizes, edges, 4, budgets, seed=0)
    big = [(b, m) for b, m in plan if b.n_node > budgets.main.n_node]
    assert sorted(i for _, m in big for i in m) == [20, 21]
    for budget, members in big:
        assert budget.n_node >= sizes[members].sum() + 1 and budget.n_edge >= edges[members].sum()
        assert budget.n_graph == budgets.main.n_graph


def test_neighbour_list_cache(tmp_path, monkeypatch):
    first = small_dataset(cache_dir=tmp_path)
    assert len(list(tmp_path.glob("neighbours-*.npz"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("neighbour lists should come from the cache")

    monkeypatch.setattr(dataset_module, "neighbour_list", fail)
    second = small_dataset(cache_dir=tmp_path)
    for a, b in zip(first.items, second.items):
        np.testing.assert_array_equal(a.graph.senders, b.graph.senders)
        np.testing.assert_array_equal(a.graph.unit_shifts, b.graph.unit_shifts)
    with pytest.raises(AssertionError, match="cache"):  # other structures: other key
        small_dataset(seed=1, cache_dir=tmp_path)


def test_heads():
    dataset = small_dataset(n=3, heads=("Default", "other"))
    assert dataset.items[0].graph.head.tolist() == [0]
    with pytest.raises(ValueError, match="head 'Default' is not one of"):
        small_dataset(n=3, heads=("mp",))


@pytest.mark.parametrize("name", ["mlearn-Si-train", "alniti"])
def test_few_distinct_shapes_on_real_data(dataset, name):
    configs = read_configurations(dataset(name))
    dataset = GraphDataset(configs, R_MAX, progress=False)
    for batch_size in (1, 4, 16, 32):
        budgets = choose_budgets(dataset, batch_size)
        shapes = set()
        for epoch in range(3):
            shapes |= set(batch_iterator(dataset, batch_size, budgets, seed=0, epoch=epoch).shapes)
        main_tiers = {s for s in shapes if s.n_node <= budgets.main.n_node}
        assert 1 <= len(main_tiers) <= budgets.tiers
        assert len(shapes) <= 8 + budgets.tiers, (batch_size, sorted(shapes))
        if batch_size >= 4:
            assert len(shapes - main_tiers) <= 2, (batch_size, sorted(shapes))


def test_size_tiers_pad_each_batch_to_the_smallest_tier_that_holds_it():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 60, size=400)
    edges = sizes * rng.integers(5, 40, size=400)
    main = Budget(256, 8192, 11)
    one = plan_batches(sizes, edges, 10, Budgets(main=main, tiers=1), seed=3)
    four = plan_batches(sizes, edges, 10, Budgets(main=main, tiers=4), seed=3)
    assert [m for _, m in one] == [m for _, m in four]  # same batches, only the padding differs
    assert {b for b, _ in one} == {main} and len({b for b, _ in four}) > 1
    waste = {}
    for name, plan in (("one", one), ("four", four)):
        padded = real = 0
        for budget, members in plan:
            n, e = sizes[members].sum(), edges[members].sum()
            assert n + 1 <= budget.n_node and e <= budget.n_edge
            if name == "four" and budget != Budget(64, 2048, 11):  # the next tier down must not fit
                smaller = Budget(budget.n_node - 64, budget.n_edge - 2048, 11)
                assert n + 1 > smaller.n_node or e > smaller.n_edge
            padded, real = padded + budget.n_node, real + n
        waste[name] = 1 - real / padded
    assert waste["four"] < waste["one"]
