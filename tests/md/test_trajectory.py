"""MD frames on disk as they are produced (jaxtl/md/trajectory.py), and `jaxtl md --resume`."""

import os
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from helpers import random_jaxtl_model

from jaxtl.cli import main
from jaxtl.md import MDConfig, MDEngine
from jaxtl.md.trajectory import FrameWriter, complete_frames

STEPS, SAVE, CHUNK = 40, 5, 10


class Killed(Exception):
    """Stands for the process dying between two chunks."""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from jaxtl.model_io import save_model

    root = tmp_path_factory.mktemp("md")
    model = random_jaxtl_model(
        seed=1,
        atomic_numbers=(29,),
        r_max=4.0,
        hidden_irreps="8x0e+8x1o",
        max_ell=1,
        correlation=(2,),
        num_interactions=1,
        avg_num_neighbors=(20.0,),
        radial_MLP=(8, 8),
    )
    save_model(root / "m", model.config, model.variables)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=0)
    ase.io.write(root / "start.xyz", atoms)
    return root, model, atoms


def md_args(root, out, *extra):
    return [
        "md",
        "--model",
        str(root / "m"),
        "--structure",
        str(root / "start.xyz"),
        "--steps",
        str(STEPS),
        "--ensemble",
        "nve",
        "--dt",
        "1",
        "--temperature",
        "400",
        "--save-every",
        str(SAVE),
        "--check-every",
        str(CHUNK),
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.parametrize("name", ["traj.xyz", "traj.traj"])
def test_frames_are_on_disk_after_each_chunk_and_a_resume_continues(setup, tmp_path, name):
    root, model, atoms = setup
    out = tmp_path / name
    # a skin these 40 steps do not use up: no chunk ends early for a rebuild, so each takes CHUNK steps
    config = MDConfig(
        steps=STEPS, dt=1.0, ensemble="nve", temperature=400, save_every=SAVE, check_every=CHUNK, skin=1.0
    )
    on_disk = []
    with pytest.raises(Killed), FrameWriter(out) as writer:

        def write_then_die(frames):
            writer.write(frames)
            on_disk.append([a.info["md_step"] for a in complete_frames(out)])
            if len(on_disk) == 3:  # the start frame, then two chunks
                raise Killed

        MDEngine(model).run(atoms, config, on_frames=write_then_die)
    assert on_disk == [[0], [0, 5, 10], [0, 5, 10, 15, 20]]  # each chunk's frames readable as soon as written

    assert main(md_args(root, out, "--resume")) == 0
    resumed = ase.io.read(out, ":")
    assert [a.info["md_step"] for a in resumed] == list(range(0, STEPS + 1, SAVE))  # each frame once, in order

    whole = tmp_path / f"whole{out.suffix}"
    assert main(md_args(root, whole)) == 0
    uninterrupted = ase.io.read(whole, ":")
    # NVE from the stored positions and velocities: the resumed run follows the uninterrupted one
    # (to the precision the file stores them with)
    for a, b in zip(resumed, uninterrupted):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-5)
        np.testing.assert_allclose(a.get_velocities(), b.get_velocities(), atol=1e-5)
    assert main(md_args(root, out, "--resume")) == 0  # already finished: nothing appended
    assert len(ase.io.read(out, ":")) == len(resumed)


def test_a_frame_cut_short_is_dropped_on_resume(setup, tmp_path):
    root, _, _ = setup
    out = tmp_path / "traj.xyz"
    assert main(md_args(root, out)) == 0
    frames = ase.io.read(out, ":")
    keep = frames[:4]  # steps 0..15, then half of the next frame, as a kill during a write leaves it
    ase.io.write(out, keep, format="extxyz")
    with open(tmp_path / "full.xyz", "w") as f:
        ase.io.write(f, frames[4:5], format="extxyz")
    partial = (tmp_path / "full.xyz").read_text().splitlines(keepends=True)
    with open(out, "a") as f:
        f.writelines(partial[: len(partial) // 2])
    assert [a.info["md_step"] for a in complete_frames(out)] == [0, 5, 10, 15]
    assert main(md_args(root, out, "--resume")) == 0
    assert [a.info["md_step"] for a in ase.io.read(out, ":")] == list(range(0, STEPS + 1, SAVE))


def test_resume_refuses_a_file_that_is_not_a_jaxtl_trajectory(setup, tmp_path):
    root, _, atoms = setup
    out = tmp_path / "other.xyz"
    ase.io.write(out, atoms)
    assert main(md_args(root, out, "--resume")) == 2  # the error names the file and the missing md_step
