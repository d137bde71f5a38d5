"""Training streamed from a prepared folder matches training on the same structures in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from test_ondisk import structures  # noqa: E402

from jaxtl.graph.ondisk import write_ondisk  # noqa: E402
from jaxtl.train import TrainConfig  # noqa: E402
from jaxtl.train.data import DataConfig  # noqa: E402
from jaxtl.train.run import ScratchConfig, train_from_scratch  # noqa: E402
from jaxtl.train.stream import PreparedData, train_from_prepared  # noqa: E402

MODEL = dict(r_max=3.0, hidden_irreps="4x0e", max_ell=1, correlation=(1,), num_interactions=1, num_bessel=4,
             radial_MLP=(8,), MLP_irreps="4x0e")


def test_streamed_training_matches_in_memory(tmp_path):
    import ase
    import ase.io

    configs = structures(30, seed=2)
    frames = []
    for c in configs:
        atoms = ase.Atoms(numbers=c.atomic_numbers, positions=c.positions, cell=c.cell, pbc=c.pbc)
        atoms.info["REF_energy"] = c.energy
        atoms.arrays["REF_forces"] = c.forces
        frames.append(atoms)
    ase.io.write(tmp_path / "train.xyz", frames)
    from jaxtl.graph.ondisk import iter_configurations

    write_ondisk(iter_configurations([tmp_path / "train.xyz"]), tmp_path / "prepared", 3.0, shard_size=7)
    cfg = TrainConfig(max_num_epochs=2, dtype="float64", progress_bar=False, plot=False)
    data = DataConfig(str(tmp_path / "train.xyz"), batch_size=4, valid_batch_size=4)
    memory = train_from_scratch(ScratchConfig(data, MODEL, cfg), tmp_path / "memory")
    streamed = train_from_prepared(PreparedData(str(tmp_path / "prepared"), batch_size=4, valid_batch_size=4),
                                   tmp_path / "streamed", model=MODEL, train_config=cfg)
    assert len(streamed.history) == 2
    assert all(np.isfinite([r["train_loss"], r["valid_loss"]]).all() for r in streamed.history)
    for a, b in zip(memory.history, streamed.history):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-9)
        np.testing.assert_allclose(b["valid_loss"], a["valid_loss"], rtol=1e-9)
    assert streamed.n_compiles == memory.n_compiles
