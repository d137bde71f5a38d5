"""Training streamed from a prepared folder matches training on the same structures in memory."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from test_ondisk import structures  # noqa: E402

from jaxtl.graph.ondisk import write_ondisk  # noqa: E402
from jaxtl.train import TrainConfig  # noqa: E402
from jaxtl.train.data import DataConfig  # noqa: E402
from jaxtl.train.run import ScratchConfig, train_from_scratch  # noqa: E402
from jaxtl.train.stream import PreparedData, train_from_prepared  # noqa: E402

MODEL = dict(
    r_max=3.0,
    hidden_irreps="4x0e",
    max_ell=1,
    correlation=(1,),
    num_interactions=1,
    num_bessel=4,
    radial_MLP=(8,),
    MLP_irreps="4x0e",
)


def _write(path, configs, isolated=()):
    import ase
    import ase.io

    frames = []
    for c in configs:
        atoms = ase.Atoms(numbers=c.atomic_numbers, positions=c.positions, cell=c.cell, pbc=c.pbc)
        atoms.info["REF_energy"] = c.energy
        atoms.arrays["REF_forces"] = c.forces
        frames.append(atoms)
    for z, energy in isolated:
        atoms = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.info.update(REF_energy=energy, config_type="IsolatedAtom")
        frames.append(atoms)
    ase.io.write(path, frames)


SETTINGS = {
    "defaults": ({}, ()),
    # IsolatedAtom frames (E0s, not trained on), a force filter, a training fraction
    "isolated, max_force, fraction": (dict(max_force=2.5, train_fraction=0.7), ((1, -1.5), (6, -4.0), (8, -3.0))),
    "given E0s": (dict(e0s="{1: -1.0, 6: -2.0, 8: -3.0}"), ()),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_streamed_training_matches_in_memory(tmp_path, name):
    from jaxtl.graph.ondisk import iter_configurations

    settings, isolated = SETTINGS[name]
    _write(tmp_path / "train.xyz", structures(30, seed=2), isolated)
    write_ondisk(iter_configurations([tmp_path / "train.xyz"]), tmp_path / "prepared", 3.0, shard_size=7)
    cfg = TrainConfig(max_num_epochs=2, dtype="float64", progress_bar=False, plot=False)
    e0s = settings.get("e0s")
    data = {k: v for k, v in settings.items() if k != "e0s"}
    memory = train_from_scratch(
        ScratchConfig(
            DataConfig(str(tmp_path / "train.xyz"), batch_size=4, valid_batch_size=4, **data), MODEL, cfg, e0s=e0s
        ),
        tmp_path / "memory",
    )
    streamed = train_from_prepared(
        PreparedData(str(tmp_path / "prepared"), batch_size=4, valid_batch_size=4, e0s=e0s, **data),
        tmp_path / "streamed",
        model=MODEL,
        train_config=cfg,
    )
    assert len(streamed.history) == 2
    assert all(np.isfinite([r["train_loss"], r["valid_loss"]]).all() for r in streamed.history)
    for a, b in zip(memory.history, streamed.history):
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-9)
        np.testing.assert_allclose(b["valid_loss"], a["valid_loss"], rtol=1e-9)
    assert streamed.n_compiles == memory.n_compiles
    e0_memory = read_model(tmp_path / "memory" / "model")
    e0_streamed = read_model(tmp_path / "streamed" / "model")
    np.testing.assert_allclose(e0_streamed, e0_memory, rtol=1e-10)
    if isolated:
        np.testing.assert_allclose(e0_streamed[0], [-1.5, -4.0, -3.0])


def read_model(folder):
    """The atomic energies [heads, elements] of a model folder."""
    from jaxtl.model_io import load_model_files

    return np.asarray(load_model_files(folder)[1]["constants"]["atomic_energies"])


def test_a_prepared_set_left_empty_by_the_filter_is_an_error(tmp_path):
    from jaxtl.graph.io import DataError
    from jaxtl.graph.ondisk import iter_configurations

    _write(tmp_path / "train.xyz", structures(6, seed=2))
    write_ondisk(iter_configurations([tmp_path / "train.xyz"]), tmp_path / "prepared", 3.0)
    with pytest.raises(DataError, match="no training structures left"):
        train_from_prepared(
            PreparedData(str(tmp_path / "prepared"), max_force=1e-3),
            tmp_path / "out",
            model=MODEL,
            train_config=TrainConfig(max_num_epochs=1, progress_bar=False, plot=False),
        )


def test_train_command_refuses_settings_a_prepared_set_cannot_apply(tmp_path):
    import subprocess

    from jaxtl.graph.ondisk import iter_configurations

    _write(tmp_path / "train.xyz", structures(6, seed=2))
    write_ondisk(iter_configurations([tmp_path / "train.xyz"]), tmp_path / "prepared", 3.0)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxtl.cli",
            "--no-cpu-tuning",
            "train",
            "--train",
            str(tmp_path / "prepared"),
            "--test",
            str(tmp_path / "train.xyz"),
            "--scaling",
            "std_scaling",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0 and "--test, --scaling cannot be used with a prepared set" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before the run folder is made
