"""`jaxtl eval` (jaxtl/evaluate.py): predictions written as mace_eval_configs writes them, and
errors per config_type that agree with the written predictions."""

import subprocess
import sys

import ase.io
import jax
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from jaxtl.model import MACE, MACEConfig
from jaxtl.model_io import save_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small random MACE for Cu and H, saved as a model folder."""
    from jaxtl.graph.batching import batch_atoms

    config = MACEConfig(
        atomic_numbers=(1, 29),
        r_max=3.0,
        num_bessel=4,
        max_ell=1,
        hidden_irreps="4x0e",
        MLP_irreps="4x0e",
        correlation=2,
        radial_MLP=(8,),
        avg_num_neighbors=8.0,
        dtype="float32",
    )
    batch = batch_atoms([bulk("Cu", "fcc", a=3.6)], config.r_max, np.float32)
    variables = MACE(config).init(jax.random.PRNGKey(0), batch.graph)
    return save_model(tmp_path_factory.mktemp("model") / "model", config, variables)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """Six EMT-labelled frames of two config_types; the bulk ones carry stress."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(6):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 1 + i % 2))
        if i % 3 == 0:
            atoms[0].symbol = "H"
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.info["REF_stress"] = atoms.get_stress()
        atoms.info["config_type"] = "bulk" if i < 4 else "defect"
        atoms.calc = None
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "test.xyz"
    ase.io.write(path, frames, format="extxyz")
    return path


def run_eval(*args):
    proc = subprocess.run(
        [sys.executable, "-m", "jaxtl.cli", "--no-cpu-tuning", "eval", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_eval_writes_predictions_and_a_table_per_config_type(model_dir, data_file, tmp_path):
    out = tmp_path / "pred.xyz"
    proc = run_eval("--model", model_dir, "--data", data_file, "--output", out, "--batch-size", 4)
    frames = ase.io.read(out, ":")
    reference = ase.io.read(data_file, ":")
    assert len(frames) == len(reference) == 6
    errors = {"bulk": [], "defect": []}
    for atoms, ref in zip(frames, reference):
        np.testing.assert_allclose(atoms.positions, ref.positions)
        assert atoms.info["REF_energy"] == pytest.approx(ref.info["REF_energy"])  # the file's labels kept
        forces = atoms.arrays["MACE_forces"]
        assert forces.shape == (len(atoms), 3) and np.isfinite(atoms.info["MACE_energy"])
        assert np.asarray(atoms.info["MACE_stress"]).size == 9
        errors[ref.info["config_type"]].append((atoms.info["MACE_energy"] - ref.info["REF_energy"]) / len(atoms))

    table = proc.stdout.splitlines()
    assert table[0].split()[:2] == ["config_type", "n"] and "E" in table[0] and "S" in table[0]
    rows = {line.split()[0]: line.split() for line in table[2:]}
    assert set(rows) == {"bulk", "defect", "all"}
    assert rows["bulk"][1] == "4" and rows["defect"][1] == "2" and rows["all"][1] == "6"
    for group, errs in errors.items():  # the table's E RMSE is that of the written predictions
        rmse = 1000 * np.sqrt(np.mean(np.square(errs)))
        assert float(rows[group][2]) == pytest.approx(rmse, rel=1e-3, abs=0.01), (group, rows[group], rmse)


def test_eval_key_prefix_and_unlabelled_file(model_dir, data_file, tmp_path):
    bare = tmp_path / "bare.xyz"
    frames = ase.io.read(data_file, ":")
    for atoms in frames:
        atoms.info = {}
        del atoms.arrays["REF_forces"]
    ase.io.write(bare, frames, format="extxyz")
    out = tmp_path / "pred.xyz"
    proc = run_eval("--model", model_dir, "--data", bare, "--output", out, "--key-prefix", "jaxtl_")
    assert "no reference labels" in proc.stderr and proc.stdout.strip() == ""
    written = ase.io.read(out, ":")
    assert all("jaxtl_energy" in a.info and "jaxtl_forces" in a.arrays for a in written)
    assert not any("MACE_energy" in a.info for a in written)


def _sources(data_file, folder):
    """The six frames as two files, and the second file prepared (`jaxtl prepare`)."""
    from jaxtl.graph.ondisk import iter_configurations, write_ondisk

    frames = ase.io.read(data_file, ":")
    first, second = folder / "first.xyz", folder / "second.xyz"
    ase.io.write(first, frames[:4], format="extxyz")
    ase.io.write(second, frames[4:] + frames[:1], format="extxyz")
    write_ondisk(iter_configurations([second]), folder / "second_prepared", 3.0, shard_size=2)
    return first, second, folder / "second_prepared"


SHARDED = """
import json, sys
from jaxtl.api import load_model
from jaxtl.evaluate import evaluate_sources
per_source, overall = evaluate_sources(load_model(sys.argv[1]), sys.argv[3:], batch_size=2, n_devices=int(sys.argv[2]))
print(json.dumps([per_source, overall]))
"""


def test_evaluate_sources_files_and_prepared_folders(model_dir, data_file, tmp_path):
    """Errors per source and overall equal `evaluate_configs` on the same structures,
    whether a source is a file or a prepared folder, on one device or two."""
    import json
    import os

    from jaxtl.api import load_model
    from jaxtl.evaluate import evaluate_configs, evaluate_sources
    from jaxtl.graph.io import read_configurations

    first, second, prepared = _sources(data_file, tmp_path)
    loaded = load_model(model_dir)
    per_source, overall = evaluate_sources(loaded, [first, second, prepared], batch_size=2)
    expected = {s: evaluate_configs(loaded, read_configurations(s)) for s in (first, second)}
    expected_all = evaluate_configs(loaded, read_configurations(first) + 2 * read_configurations(second))
    for got, want in [
        (per_source[str(first)], expected[first]),
        (per_source[str(second)], expected[second]),
        (per_source[str(prepared)], expected[second]),
        (overall, expected_all),
    ]:
        assert set(got) == set(want)
        for group in want:
            assert got[group]["n_graphs"] == want[group]["n_graphs"]
            for key in ("energy_rmse", "forces_rmse", "stress_rmse"):
                assert got[group][key] == pytest.approx(want[group][key], rel=1e-4), (group, key)
    assert overall["all"]["n_graphs"] == 4 + 3 + 3 and overall["defect"]["n_graphs"] == 2 * 2

    env = dict(
        os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    )
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(model_dir), "2", str(first), str(prepared)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.strip().splitlines()[-1])[1]["all"]
    one = evaluate_sources(loaded, [first, prepared], batch_size=2)[1]["all"]
    assert two["n_graphs"] == one["n_graphs"] == 7
    for key in ("energy_rmse", "forces_rmse", "stress_rmse"):
        assert two[key] == pytest.approx(one[key], rel=1e-5)


def test_evaluate_sources_refuses_a_folder_prepared_for_another_cutoff(model_dir, data_file, tmp_path):
    from jaxtl.api import load_model
    from jaxtl.evaluate import evaluate_sources
    from jaxtl.graph.io import DataError
    from jaxtl.graph.ondisk import iter_configurations, write_ondisk

    write_ondisk(iter_configurations([data_file]), tmp_path / "prepared", 4.0)
    with pytest.raises(DataError, match="r_max 4.0 A, the model's is 3.0 A"):
        evaluate_sources(load_model(model_dir), [tmp_path / "prepared"])


def test_eval_command_over_a_file_and_a_prepared_folder(model_dir, data_file, tmp_path):
    """`jaxtl eval --data FILE FOLDER --json` gives evaluate_sources' errors; --output with
    several sources is refused before anything is computed."""
    import json

    from jaxtl.api import load_model
    from jaxtl.evaluate import evaluate_sources

    first, _, prepared = _sources(data_file, tmp_path)
    proc = run_eval("--model", model_dir, "--data", first, prepared, "--json", "--batch-size", 2)
    printed = json.loads(proc.stdout)
    per_source, overall = evaluate_sources(load_model(model_dir), [first, prepared], batch_size=2)
    assert set(printed["sources"]) == {str(first), str(prepared)}
    assert printed["all"]["all"]["n_graphs"] == overall["all"]["n_graphs"] == 7
    assert printed["all"]["all"]["forces_rmse"] == pytest.approx(overall["all"]["forces_rmse"], rel=1e-5)
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxtl.cli",
            "--no-cpu-tuning",
            "eval",
            "--model",
            str(model_dir),
            "--data",
            str(first),
            str(prepared),
            "--output",
            str(tmp_path / "p.xyz"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert refused.returncode != 0 and "--output writes the predictions of one file" in refused.stderr
