"""A prepared (on-disk) dataset gives the in-memory path's items, budgets and batches bit for bit."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxtl.graph.dataset import GraphDataset, choose_budgets
from jaxtl.graph.io import Configuration, DataError
from jaxtl.graph.ondisk import OnDiskDataset, iter_configurations, streamed_batches, write_ondisk
from jaxtl.train.data import epoch_batches

R_MAX = 3.0


def structures(n: int, seed: int = 0) -> list[Configuration]:
    """Small periodic cells of 2-7 atoms with random labels and two config types."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(2, 8))
        cell = np.diag(rng.uniform(4.0, 6.0, 3))
        out.append(
            Configuration(
                atomic_numbers=rng.choice([1, 6, 8], k),
                positions=rng.uniform(0, 4.0, (k, 3)),
                cell=cell,
                pbc=(True, True, i % 3 != 0),
                energy=float(rng.normal()),
                forces=rng.normal(size=(k, 3)),
                stress=None if i % 2 else rng.normal(size=(3, 3)),
                energy_weight=1.0,
                forces_weight=1.0,
                stress_weight=0.0 if i % 2 else 1.0,
                config_type="bulk" if i % 4 else "surface",
                index=i,
            )
        )
    return out


def _equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert jax.tree.structure(a) == jax.tree.structure(b)


def test_prepared_set_streams_the_in_memory_batches(tmp_path):
    configs = structures(23)
    write_ondisk(iter(configs), tmp_path / "set", R_MAX, shard_size=5)
    disk = OnDiskDataset(tmp_path / "set")
    memory = GraphDataset(configs, R_MAX, progress=False)
    assert len(disk) == 23 and len(list((tmp_path / "set").glob("shard-*.h5"))) == 5
    np.testing.assert_array_equal(disk.n_nodes, memory.n_nodes)
    np.testing.assert_array_equal(disk.n_edges, memory.n_edges)
    for i in (0, 4, 5, 22):
        _equal(disk.item(i), memory.items[i])
    assert choose_budgets(disk, 4) == choose_budgets(memory, 4)
    streamed = streamed_batches(disk, 4, seed=3)
    in_memory = epoch_batches(memory, 4, seed=3, shuffle=True)
    for epoch in (0, 1):
        a, b = streamed(epoch), in_memory(epoch)
        assert len(a) == len(b)
        for i in range(len(a)):
            assert a.shape_key(i) == b.shape_key(i) and a.config_types(i) == b.config_types(i)
            _equal(a[i], b[i])
    disk.close()


def test_prepare_reads_files_and_refuses_to_overwrite(tmp_path):
    import ase
    import ase.io

    frames = []
    for c in structures(4, seed=1):
        atoms = ase.Atoms(numbers=c.atomic_numbers, positions=c.positions, cell=c.cell, pbc=c.pbc)
        atoms.info["REF_energy"] = c.energy
        atoms.arrays["REF_forces"] = c.forces
        frames.append(atoms)
    ase.io.write(tmp_path / "in.xyz", frames)
    out = write_ondisk(iter_configurations([tmp_path / "in.xyz"]), tmp_path / "set", R_MAX, shard_size=3)
    disk = OnDiskDataset(out)
    assert len(disk) == 4
    np.testing.assert_allclose(disk.item(3).labels.forces, frames[3].arrays["REF_forces"])
    with pytest.raises(FileExistsError):
        write_ondisk(iter_configurations([tmp_path / "in.xyz"]), out, R_MAX)
    with pytest.raises(DataError, match="not a prepared dataset"):
        OnDiskDataset(tmp_path)
