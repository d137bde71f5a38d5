"""Distillation on tiny models: labelling, sampling, bad input, the API, the CLI, the H2/Cu --fast benchmark."""

import json
import os
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu, write_structures  # noqa: E402

from jaxtl.distill import LabellingError, SamplingConfig, label_structures, sample_structures  # noqa: E402
from jaxtl.graph.batching import batch_atoms  # noqa: E402
from jaxtl.graph.io import DataError, read_configurations  # noqa: E402
from jaxtl.model_io import save_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"


def test_labels_match_the_teacher_and_file_is_reusable(teacher, tmp_path):
    structures = [h_on_cu(i) for i in range(5)]
    structures[1].info["REF_energy"] = -1.25  # a "DFT" label the input carried
    labelled, stats = label_structures(teacher, structures, tmp_path / "lab.xyz", batch_size=2)
    assert stats.n_structures == 5 and stats.n_batches == 3 and stats.structures_per_s > 0
    assert stats.n_compilations <= 1  # capacities only grow: one shape here
    direct = teacher.predict(batch_atoms(structures[:1], teacher.config.r_max).graph, compute_stress=True)
    configs = read_configurations(tmp_path / "lab.xyz")
    np.testing.assert_allclose(configs[0].energy, float(direct["energy"][0]), rtol=1e-10)
    np.testing.assert_allclose(
        configs[0].forces, np.asarray(direct["forces"])[:9], atol=1e-7
    )  # extxyz keeps 8 decimals
    np.testing.assert_allclose(configs[0].stress, np.asarray(direct["stress"])[0], atol=1e-7)
    assert labelled[1].info["DFT_energy"] == -1.25 and "DFT_energy" not in labelled[0].info
    assert "REF_energy" not in structures[0].info  # inputs untouched


def test_teacher_missing_an_element_is_named(teacher):
    atoms = h_on_cu(0)
    atoms[-1].symbol = "O"
    with pytest.raises(DataError, match="element O"):
        label_structures(teacher, [h_on_cu(1), atoms])


def test_labelling_failure_names_the_structure_and_keeps_the_rest(teacher, tmp_path):
    structures = [h_on_cu(i) for i in range(4)]
    structures[3].positions[1] = structures[3].positions[0]  # two atoms on one spot: NaN forces
    with pytest.raises(LabellingError, match="frame 3") as err:
        label_structures(teacher, structures, tmp_path / "lab.xyz", batch_size=1)
    assert len(err.value.labelled) == 3 and len(ase.io.read(tmp_path / "lab.xyz", ":")) == 3


def test_sampling_keeps_every_kth_frame_and_rattles(teacher):
    starts = [h_on_cu(0), h_on_cu(1)]
    config = SamplingConfig(md_steps=10, temperature=300, keep_every=5, n_rattled=1, rattle_std=0.05, check_every=10)
    structures, report = sample_structures(teacher, starts, config, progress=True)
    assert len(structures) == 2 * 3 * 2 and report["md_steps"] == 20 and not report["md_errors"]
    assert all(a.calc is None for a in structures)
    assert sum(bool(a.info.get("rattled")) for a in structures) == 6
    assert not np.allclose(structures[0].positions, structures[2].positions)


def test_sampling_keeps_frames_of_an_exploding_run_and_goes_on(teacher, caplog):
    """Two Cu atoms shot at each other: that start's MD stops naming the step, its frames so
    far are kept, the error is reported, and the next start is sampled in full."""
    import logging

    from ase import units

    bad = Atoms("Cu2", positions=[[0, 0, 0], [3.0, 0, 0]])
    bad.set_velocities(np.array([[0.2, 0, 0], [-0.2, 0, 0]]) / units.fs)  # 0.4 A/fs closing speed
    config = SamplingConfig(md_steps=30, temperature=300, keep_every=1, check_every=10)
    with caplog.at_level(logging.WARNING, logger="jaxtl.md"):
        structures, report = sample_structures(teacher, [bad, h_on_cu(0)], config, progress=False)
    [error] = report["md_errors"]
    assert error.startswith("start 0: MD stopped at step") and "atoms 0 and 1" in error
    assert "keeping" in caplog.text
    from_bad = [a for a in structures if a.info["sample_start"] == 0]
    assert 1 < len(from_bad) < 31 and all(np.isfinite(a.positions).all() for a in from_bad)
    assert sum(a.info["sample_start"] == 1 for a in structures) == 31


def test_distill_cli_end_to_end(teacher, tmp_path):
    """`jaxtl distill` (a thin call into `distill`): MD sampling, labels, student, report."""
    from jaxtl.cli import main

    starts = [h_on_cu(i) for i in range(3)]
    for a in starts:  # DFT-like labels on the inputs
        a.info["REF_energy"] = -10.0
        a.arrays["REF_forces"] = np.zeros((len(a), 3))
    ase.io.write(tmp_path / "starts.xyz", starts)
    teacher_dir = tmp_path / "teacher"
    save_model(teacher_dir, teacher.config, teacher.variables)
    rc = main(
        [
            "distill",
            "--teacher",
            str(teacher_dir),
            "--structures",
            str(tmp_path / "starts.xyz"),
            "--md-steps",
            "10",
            "--keep-every",
            "5",
            "--check-every",
            "10",
            "--temperature",
            "300",
            "--student-hidden-irreps",
            "4x0e",
            "--student-radial-mlp",
            "8",
            "--student-correlation",
            "1",
            "--student-mlp-irreps",
            "4x0e",
            "--student-num-bessel",
            "4",
            "--epochs",
            "1",
            "--test-fraction",
            "0.25",
            "--quiet",
            "--dft-test",
            str(tmp_path / "starts.xyz"),
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "cli" / "report.json").read_text())
    # training runs: 3 starts x 3 kept frames; independent test runs (other seeds): 3 x 2 (no frame 0)
    assert report["n_structures"] == {
        "labelled": 15,
        "train_and_valid": 9,
        "test": 6,
        "test_sets": {"test_independent_runs": 6},
    }
    assert report["sampling"]["md_steps"] == 60 and report["labelling"]["structures_per_s"] > 0
    assert json.loads((tmp_path / "cli" / "sampling.json").read_text())["counts"]["train"] == 9
    assert report["student_config"]["hidden_irreps"] == "4x0e" and report["student_config"]["num_interactions"] == 1
    assert report["student_config"]["r_max"] == teacher.config.r_max
    assert report["student_vs_teacher"]["n_graphs"] == 6 and report["student_vs_teacher"]["forces_rmse"] > 0
    assert report["teacher_vs_dft"]["n_graphs"] >= 3 and report["student_vs_dft"]["forces_rmse"] > 0
    assert report["speed"]["speedup"] > 0 and report["n_parameters"]["student"] > 0
    labelled = ase.io.read(tmp_path / "cli" / "labelled.xyz", ":")
    dft = [a for a in labelled if "DFT_energy" in a.info]
    assert len(dft) == 3 and all(a.info["md_step"] == 0 for a in dft)  # only the unmoved starts keep DFT labels
    assert (tmp_path / "cli" / "student" / "model" / "config.json").exists()
    assert json.loads((tmp_path / "cli" / "student" / "student.json").read_text())["kind"] == "mace"
    assert report["provenance"]["command"].startswith("jaxtl distill --teacher ")
    assert {"jaxtl_commit", "device", "versions", "date"} <= set(report["provenance"])
    # the results file of a run (benchmarks/distill_report.py) reads the run's own provenance
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import distill_report

    assert distill_report.main([str(tmp_path / "cli"), "--results", str(tmp_path / "results")]) == 0
    table = (tmp_path / "results.md").read_text()
    assert "| student vs teacher | test_independent_runs | 6 |" in table and "| teacher vs DFT |" in table
    assert report["provenance"]["command"] in table


def test_distill_help_gives_units(capsys):
    from jaxtl.cli import main

    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    text = capsys.readouterr().out
    assert "--md-steps" in text and "temperature in K" in text and "--student-hidden-irreps" in text


@pytest.mark.skipif(not (SHARED / "models" / "h2cu_mace.model").exists(), reason="../shared/models absent")
def test_h2cu_benchmark_fast(tmp_path):
    pytest.importorskip("mace", reason="converting the teacher needs mace-torch")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import distill_h2cu

    pytest.importorskip("ace_jax", reason="the fast study fits an ACE student")
    assert distill_h2cu.main(["--fast", "--students", "ace_fast", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    ace = results["students"]["ace_fast"]
    assert results["sampling"]["counts"]["train"] > 10 and not results["sampling"]["md_errors"]
    assert set(ace["forces_rmse_by_set"]) == {"test_independent_runs", "test_held_out_starts"}
    assert all(np.isfinite(v) for v in ace["forces_rmse_by_set"].values())
    assert ace["speedup_56"] > 0 and ace["speedup_224"] > 0 and results["meta"]["commit"]


@pytest.mark.skipif(not (SHARED / "data" / "h2cu_slabs").exists(), reason="../shared/data/h2cu_slabs absent")
def test_h2cu_steps_stage_samples_stepped_training_starts(teacher, tmp_path, monkeypatch):
    """distill_h2cu's *_steps data: the training slabs with a row off each face, sampled and
    labelled by the teacher, appended to labelled.xyz as training frames; the held-out slab
    never appears."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import distill_h2cu

    monkeypatch.setitem(distill_h2cu.STEPS_SAMPLING, "md_steps", 0)  # the random teacher's MD collapses the H2
    s = distill_h2cu.SETTINGS["fast"]
    (tmp_path / "data").mkdir()
    labelled = tmp_path / "data" / "labelled.xyz"
    label_structures(teacher, [h_on_cu(0)], labelled)
    out = distill_h2cu.stage_steps(teacher, labelled, tmp_path, s, 0, "narrow", "steps")
    frames = ase.io.read(out, ":")
    added = frames[1:]
    n_starts = len(s["train_slabs"]) * s["per_slab"]
    assert len(added) == n_starts * 2  # each stepped start and a rattled copy of it
    assert all(a.info["split"] == "train" and a.info["augment"].startswith("steps: top: 1 of") for a in added)
    assert {a.info["source"] for a in added} == {f"{name} + H2" for name in s["train_slabs"]}
    assert all(len(a) == 56 - 6 and "REF_forces" in a.arrays for a in added)
    record = json.loads((tmp_path / "data" / "sampling_steps.json").read_text())
    assert record["n_structures"] == len(added) and len(record["starts"]) == n_starts
    # wide: each start doubled across its rows (one H2 kept), 3 of 6 rows off each face, after those
    monkeypatch.setitem(distill_h2cu.WIDE_STEPS_SAMPLING, "md_steps", 0)
    wide = ase.io.read(distill_h2cu.stage_steps(teacher, out, tmp_path, s, 0, "wide", "steps2"), ":")
    assert len(wide) == len(frames) + n_starts * 2
    assert all(
        len(a) == 2 * 54 - 18 + 2 and a.info["augment"].startswith("steps: top: 3 of 6") for a in wide[len(frames) :]
    )


TWO_DEVICES = """
import json, sys
from jaxtl.cli import main
for argv in json.loads(sys.argv[1]):  # one process: its compiled programs serve every run
    if main(argv):
        sys.exit(f"failed: jaxtl {' '.join(argv)}")
"""


def test_distill_cli_trains_the_student_on_two_devices(teacher_dir, tmp_path):
    """--devices 2 (host devices in a subprocess): the MACE student trains data parallel,
    --batch-size 4 (the global batch) being 2 structures a device, and the run is recorded
    so. A run started on one device and resumed on two (--resume RUN_DIR --devices 2, more
    epochs) gives the student of a one-device run to round-off."""
    import subprocess

    import yaml

    starts = write_structures(tmp_path / "starts.xyz", [h_on_cu(i, periodic=False) for i in range(8)])
    env = dict(
        os.environ,
        XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip(),
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    tiny = ["--student-hidden-irreps", "4x0e", "--student-radial-mlp", "8", "--student-correlation", "1"]
    tiny += ["--student-mlp-irreps", "4x0e", "--student-num-bessel", "4", "--test-fraction", "0.25"]
    new = ["distill", "--teacher", str(teacher_dir), "--structures", starts, *tiny, "--batch-size", "4", "--quiet"]
    two, one, moved = tmp_path / "two", tmp_path / "one", tmp_path / "moved"
    runs = [
        [*new, "--devices", "2", "--epochs", "1", "--out", str(two)],
        [*new, "--devices", "1", "--epochs", "2", "--out", str(one)],
        [*new, "--devices", "1", "--epochs", "1", "--out", str(moved)],
        ["distill", "--resume", str(moved), "--devices", "2", "--epochs", "2", "--quiet"],
    ]
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES, json.dumps(runs)], capture_output=True, text=True, timeout=600, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((two / "distill_config.yaml").read_text())
    assert config["student"]["train"]["n_devices"] == 2 and config["student"]["batch_size"] == 4
    assert json.loads((two / "student" / "train_config.json").read_text())["n_devices"] == 2
    assert yaml.safe_load((two / "student" / "scratch_config.yaml").read_text())["data"]["batch_size"] == 2
    report = json.loads((two / "report.json").read_text())
    assert report["training"]["epochs"] == 1 and np.isfinite(report["student_vs_teacher"]["forces_rmse"])

    reference, resumed = (json.loads((run / "report.json").read_text()) for run in (one, moved))
    assert resumed["training"]["train_config"]["n_devices"] == 2 and resumed["training"]["epochs"] == 2
    for key in ("energy_rmse", "forces_rmse"):
        np.testing.assert_allclose(resumed["student_vs_teacher"][key], reference["student_vs_teacher"][key], rtol=1e-4)
