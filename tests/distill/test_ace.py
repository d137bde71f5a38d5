"""Linear ACE students (fast settings), load_calculator, honest test sets, a NaN teacher."""

import json
import os
import sys

import ase.io
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu, write_structures  # noqa: E402

from jaxtl.distill import (  # noqa: E402
    DistillConfig,
    DistillDataConfig,
    SamplingConfig,
    SamplingPlan,
    SpeedConfig,
    TeacherConfig,
    distill,
    label_structures,
    sample_plan,
)
from jaxtl.distill.labelling import LabellingError  # noqa: E402
from jaxtl.distill.sampling import TEST_HELD_OUT_START, TEST_INDEPENDENT, TRAIN  # noqa: E402
from jaxtl.distill.splits import split_labelled  # noqa: E402
from jaxtl.graph.io import DataError  # noqa: E402
from jaxtl.model_io import save_model  # noqa: E402

TINY_ACE = dict(order=2, degree=5, r_max=4.0, map_steps=60)


@pytest.fixture(scope="module")
def ace_run(teacher_dir, tmp_path_factory):
    """One fast ACE distillation (12 structures labelled as given), shared by the checks."""
    pytest.importorskip("ace_jax", reason="ACE students need the ace extra")
    from jaxtl.distill import ACEStudentConfig

    out = tmp_path_factory.mktemp("ace")
    starts = write_structures(out.parent / "ace_starts.xyz", [h_on_cu(i, rattle=0.05) for i in range(12)])
    config = DistillConfig(
        TeacherConfig(str(teacher_dir)),
        DistillDataConfig(starts=(starts,), test_fraction=0.25),
        student=ACEStudentConfig(**TINY_ACE),
        speed=SpeedConfig(structures=2, repeats=2),
    )
    return out, distill(config, out, progress=False)


def test_ace_student_reports_like_a_mace_student(ace_run):
    out, report = ace_run
    assert report["student_kind"] == "ace" and report["student_config"]["order"] == 2
    assert report["n_structures"]["test"] == 3 and report["n_structures"]["train_and_valid"] == 9
    errors = report["student_vs_teacher"]
    assert errors["n_graphs"] == 3
    for key in ("energy_rmse", "energy_mae", "forces_rmse", "forces_mae"):
        assert np.isfinite(errors[key]) and errors[key] > 0
    assert report["student_vs_teacher_by_set"]["test_random_structures"]["forces_rmse"] == errors["forces_rmse"]
    speed = report["speed"]
    assert speed["student"]["ms_per_call"] > 0 and speed["teacher"]["ms_per_call"] > 0 and speed["speedup"] > 0
    [unc] = report["uncertainty"].values()
    for q in ("energy", "forces"):
        post, pred, noise = (unc[f"{q}_{k}"] for k in ("posterior_std_median", "predictive_std_median", "noise"))
        assert 0 < post < pred and noise > 0
        assert unc[f"{q}_posterior_within_1std"] <= unc[f"{q}_predictive_within_1std"] <= 1
    record = json.loads((out / "student" / "student.json").read_text())
    # the forces' noise is the evidence fit's sigma_F, the same for every component
    assert unc["forces_noise"] == pytest.approx(1e3 * np.exp(record["hyperparameters"]["log_sigma_F"]), rel=1e-9)
    # the energy's is sigma_E sqrt(n) on a structure's total, per atom sigma_E / sqrt(n)
    n_atoms = np.median([len(a) for a in ase.io.read(out / "test.xyz", ":")])
    sigma_e = np.exp(record["hyperparameters"]["log_sigma_E"])
    assert unc["energy_noise"] == pytest.approx(1e3 * sigma_e / np.sqrt(n_atoms), rel=1e-9)
    assert len(unc["energy_posterior_std_per_structure"]) == 3
    assert report["n_parameters"]["student"] > 0
    record = json.loads((out / "student" / "student.json").read_text())
    assert record["kind"] == "ace" and (out / "student" / "model.npz").exists()
    assert json.loads((out / "report.json").read_text())["student_kind"] == "ace"


def test_load_calculator_gives_the_fitted_model(ace_run):
    """load_calculator(folder) is the fitted model: the same numbers as ace-jax's own
    calculator on the model file, and errors that reproduce the report's."""
    from ace_jax.calc.point import ACECalculator

    import jaxtl

    out, report = ace_run
    calc = jaxtl.load_calculator(out / "student")
    reference = ACECalculator(str(out / "student" / "model.npz"))
    test = ase.io.read(out / "test.xyz", ":")
    # the two sum the same terms in different orders: round-off grows with the coefficients, large
    # in this fit, which nearly interpolates its 9 structures
    weights = np.load(out / "student" / "model.npz")
    scale = max(1.0, np.abs(weights["WB"]).max(), np.abs(weights["Wpair"]).max())
    for atoms in test:
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = calc, reference
        np.testing.assert_allclose(a.get_potential_energy(), b.get_potential_energy(), rtol=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-11 * scale)
    from jaxtl.distill.students import calculator_errors

    np.testing.assert_allclose(
        calculator_errors(calc, test)["forces_rmse"], report["student_vs_teacher"]["forces_rmse"], rtol=1e-6
    )  # test.xyz keeps 8 decimals
    # the student is fitted, not the zero readout of a bare basis
    a = test[0].copy()
    a.calc = calc
    assert np.abs(a.get_forces() - a.arrays["REF_forces"]).max() < np.abs(a.arrays["REF_forces"]).max()


def test_a_resumed_ace_run_reads_its_fitted_student_back(ace_run, monkeypatch, tmp_path):
    """A run stopped after the fit (its report missing) resumes without labelling or fitting
    again, to the same errors."""
    import shutil

    import jaxtl.distill.ace as ace
    import jaxtl.distill.labelled_set as labelled_set
    from jaxtl.distill.config import CONFIG_FILE

    out, report = ace_run
    shutil.copytree(out, tmp_path / "run")
    (tmp_path / "run" / "report.json").unlink()

    def refused(*args, **kwargs):
        raise AssertionError("a finished step was run again")

    monkeypatch.setattr(ace, "fit_ace_student", refused)
    monkeypatch.setattr(labelled_set, "label_structures", refused)
    config = DistillConfig.load(tmp_path / "run" / CONFIG_FILE)
    again = distill(config, tmp_path / "run", resume=True, progress=False)
    assert again["student_vs_teacher"] == pytest.approx(report["student_vs_teacher"], rel=1e-10)
    assert again["uncertainty"] == report["uncertainty"] and again["n_structures"] == report["n_structures"]


def test_ace_student_names_an_element_it_lacks(ace_run):
    import jaxtl

    out, _ = ace_run
    atoms = h_on_cu(0, rattle=0.05)
    atoms[-1].symbol = "O"
    atoms.calc = jaxtl.load_calculator(out / "student")
    with pytest.raises(DataError, match="element O"):
        atoms.get_potential_energy()


def test_ace_fit_names_element_and_frame(teacher, tmp_path):
    pytest.importorskip("ace_jax")
    from jaxtl.distill import ACEStudentConfig, fit_ace_student

    labelled, _ = label_structures(teacher, [h_on_cu(i, rattle=0.05) for i in range(4)])
    test = [labelled[0].copy(), labelled[1].copy()]
    test[1][-1].symbol = "O"
    config = ACEStudentConfig(**TINY_ACE, elements=(1, 29))
    with pytest.raises(DataError, match=r"test set independent, frame 1: element O"):
        fit_ace_student(labelled[:3], config, tmp_path, test_sets={"independent": test})


def test_ace_fits_molecules_without_a_cell(teacher, tmp_path, monkeypatch):
    """Non-periodic structures with no cell (a molecule file) fit, and the student's calculator
    gives finite forces on one. With no test sets, ace-jax predicts one structure, not the
    whole training set."""
    pytest.importorskip("ace_jax")
    import ace_jax.fit.pipeline as pipeline
    from ase import Atoms

    load, predicted = pipeline.load_fit_data, []
    monkeypatch.setattr(pipeline, "load_fit_data", lambda *a, **k: predicted.append(len(k["test"])) or load(*a, **k))

    from jaxtl import load_calculator
    from jaxtl.distill import ACEStudentConfig, fit_ace_student

    rng = np.random.default_rng(0)
    base = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.6], [1.5, 0.0, 0.8], [0.0, 1.5, 0.8]])
    molecules = [Atoms("CuHCuH", positions=base + rng.normal(0, 0.05, base.shape)) for _ in range(6)]
    assert not molecules[0].pbc.any() and molecules[0].cell.volume == 0
    labelled, _ = label_structures(teacher, molecules)
    fit_ace_student(labelled, ACEStudentConfig(**TINY_ACE), tmp_path / "student")
    assert predicted == [1]
    calc = load_calculator(tmp_path / "student")
    atoms = molecules[0].copy()
    atoms.calc = calc
    assert np.isfinite(atoms.get_forces()).all()


def test_load_calculator_mace_and_unknown_folders(teacher, tmp_path):
    import jaxtl
    from jaxtl.calculator import MACECalculator
    from jaxtl.distill.students import write_mace_record

    save_model(tmp_path / "student" / "model", teacher.config, teacher.variables)
    write_mace_record(tmp_path / "student")
    assert isinstance(jaxtl.load_calculator(tmp_path / "student"), MACECalculator)
    assert isinstance(jaxtl.load_calculator(tmp_path / "student" / "model"), MACECalculator)
    (tmp_path / "student" / "student.json").unlink()
    assert isinstance(jaxtl.load_calculator(tmp_path / "student"), MACECalculator)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="expected student.json"):
        jaxtl.load_calculator(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "student.json").write_text('{"kind": "gap"}')
    with pytest.raises(ValueError, match="unknown student kind 'gap'"):
        jaxtl.load_calculator(tmp_path / "odd")


def test_no_test_frame_comes_from_a_training_trajectory(teacher):
    """The plan's test frames come from other MD runs (other seeds, temperatures, a start
    held out entirely), never from a trajectory that training uses."""
    starts = [h_on_cu(i, rattle=0.05) for i in range(3)]
    plan = SamplingPlan(
        train=SamplingConfig(md_steps=10, temperature=300, keep_every=5, n_rattled=1, check_every=10),
        test_temperatures=(500,),
        test_md_steps=10,
        held_out_starts=(2,),
    )
    structures, record = sample_plan(teacher, starts, plan, progress=False)
    train, tests, _ = split_labelled(structures)
    train_runs = {a.info["trajectory"] for a in train}
    assert train_runs and all(a.info["trajectory"] not in train_runs for frames in tests.values() for a in frames)
    assert {a.info["sample_start"] for a in train} == {0, 1}
    assert {a.info["sample_start"] for a in tests[TEST_HELD_OUT_START]} == {2}
    assert {a.info["md_temperature"] for a in tests[TEST_INDEPENDENT]} == {500.0}
    train_seeds = {r["seed"] for r in record["runs"] if r["split"] == TRAIN}
    assert not train_seeds & {r["seed"] for r in record["runs"] if r["split"] != TRAIN}
    # no test frame repeats a training geometry (frame 0 of a test run is the shared start)
    train_pos = np.stack([a.positions for a in train])
    for frames in tests.values():
        for a in frames:
            assert np.abs(train_pos - a.positions).reshape(len(train), -1).max(axis=1).min() > 1e-6
    assert not any(a.info.get("rattled") for frames in tests.values() for a in frames)
    assert record["counts"] == {
        TRAIN: len(train),
        TEST_INDEPENDENT: len(tests[TEST_INDEPENDENT]),
        TEST_HELD_OUT_START: len(tests[TEST_HELD_OUT_START]),
    }
    assert record["plan"]["held_out_starts"] == [2] and record["starts"][2]["n_atoms"] == 9
    # untagged frames of one trajectory are refused as a test set
    for a in structures:
        del a.info["split"]
    with pytest.raises(ValueError, match="no test"):
        split_labelled([a for a in structures if a.info["sample_start"] == 0])


def test_nan_teacher_keeps_what_was_labelled_and_the_record(teacher_dir, tmp_path):
    """A teacher that gives NaN on the 4th structure: a clear error naming it, the three
    before it labelled in labelled.xyz, and sampling.json saying so."""
    structures = [h_on_cu(i, rattle=0.05) for i in range(5)]
    structures[3].positions[1] = structures[3].positions[0]
    starts = write_structures(tmp_path / "starts.xyz", structures)
    config = DistillConfig(str(teacher_dir), DistillDataConfig(starts=(starts,), label_batch_size=1))
    with pytest.raises(LabellingError, match="sampled.xyz, frame 3") as err:
        distill(config, tmp_path / "run", progress=False)
    tmp_path = tmp_path / "run"
    assert len(err.value.labelled) == 3
    assert len(ase.io.read(tmp_path / "labelled.xyz", ":")) == 3
    record = json.loads((tmp_path / "sampling.json").read_text())
    assert record["labelled"] == 3 and "frame 3" in record["labelling_error"]
    assert len(record["starts"]) == 5


def test_missing_ace_jax_names_the_extra(monkeypatch):
    from jaxtl.distill.ace import require_ace_jax

    monkeypatch.setitem(sys.modules, "ace_jax", None)
    with pytest.raises(ImportError, match=r"jaxtl\[ace\]"):
        require_ace_jax()


def test_cli_ace_options_and_r0(capsys):
    """The --ace-* options make the ACEStudentConfig; an H r0 comes from jaxtl's table
    (ace-jax has none), and an element without one is named."""
    import argparse

    from jaxtl.cli.distill import ace_config, add_parser
    from jaxtl.distill.ace import ACEStudentConfig

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "distill",
            "--teacher",
            "t",
            "--out",
            "o",
            "--student",
            "ace",
            "--ace-order",
            "2",
            "--ace-degree",
            "7",
            "--ace-r-max",
            "4.5",
            "--ace-r0",
            "Cu=2.5",
            "--ace-solver",
            "qr",
            "--ace-smoothness-exponent",
            "2",
        ]
    )
    config = ace_config(args)
    assert config == ACEStudentConfig(
        order=2, degree=7, r_max=4.5, r0=((29, 2.5),), solver="qr", smoothness_exponent=2.0
    )
    pytest.importorskip("ace_jax")
    np.testing.assert_allclose(config.r0_table([1, 29]), [[0.74, 1.62], [1.62, 2.5]])
    with pytest.raises(ValueError, match="no bond length r0 for He"):
        config.r0_table([2, 29])


def test_smoothness_exponent_sets_the_prior_diagonal():
    pytest.importorskip("ace_jax")
    from ace_jax.basis.model import build_model

    from jaxtl.distill.ace import ACEStudentConfig, _basis

    config = ACEStudentConfig(**TINY_ACE)
    default = build_model([1, 29], 2, 5, wL=1.5, rcut=4.0, r0=config.r0_table([1, 29]))
    raw = np.asarray(default.gamma)  # ace-jax's own prior (p 4), which the default keeps up to scale
    np.testing.assert_allclose(_basis(config, [1, 29], None).gamma, raw / np.sqrt(raw.max()), rtol=1e-14)
    squared = _basis(ACEStudentConfig(**TINY_ACE, smoothness_exponent=2.0), [1, 29], None)
    # per column: sum over its bodies (n, l) of (l / (2/3))^2 + n^2, tensor columns per
    # species, then pair columns (n, 0) per species
    tensor = [sum((1.5 * l) ** 2 + n**2 for n, l in body) for body in default.meta["nnll"]]
    pair = [float(n**2) for n in range(1, default.meta["n_pair"] + 1)]
    expected = np.asarray(tensor * 2 + pair * 2)
    np.testing.assert_allclose(squared.gamma, expected / np.sqrt(expected.max()))
    saved = ACEStudentConfig(smoothness_exponent=2.0).to_dict()
    assert ACEStudentConfig.from_dict(saved).smoothness_exponent == 2.0
    with pytest.raises(ValueError, match="smoothness_exponent must be > 0, got 0"):
        ACEStudentConfig(smoothness_exponent=0)


def _fitted_prior(config, frames):
    """The gamma ace-jax's fit uses for the prior (its Problem), for a jaxtl ACE config."""
    from ace_jax.fit.pipeline import load_fit_data
    from ace_jax.fit.pipeline.problem import build_problem

    from jaxtl.distill.ace import _basis, _enable_x64, _fit_config, _label_frames

    _enable_x64()
    elements = [1, 29]
    fit_config = _fit_config(config, _basis(config, elements, None), elements)
    fit_config.validate()
    data = load_fit_data(fit_config, train=_label_frames(frames), log=lambda *a, **k: None)
    return np.asarray(build_problem(fit_config, data).prob.gamma)


def test_ace_prior_reaches_the_fit(teacher):
    """--ace-no-smoothness-prior gives the fit an isotropic prior (ace-jax rebuilt the smoothness
    prior for a basis built without one), and the smoothness prior keeps its relative weights,
    scaled so its largest gamma is the square root of the raw one."""
    pytest.importorskip("ace_jax")
    from ace_jax.basis.model import build_model

    from jaxtl.distill import ACEStudentConfig

    frames, _ = label_structures(teacher, [h_on_cu(i, rattle=0.05) for i in range(2)])
    config = ACEStudentConfig(order=2, degree=4, r_max=4.0)
    iso = _fitted_prior(ACEStudentConfig(order=2, degree=4, r_max=4.0, smoothness_prior=False), frames)
    np.testing.assert_array_equal(iso, np.ones_like(iso))
    raw = np.asarray(build_model([1, 29], 2, 4, wL=config.wL, rcut=4.0, r0=config.r0_table([1, 29])).gamma)
    smooth = _fitted_prior(config, frames)
    assert raw.max() > 100
    np.testing.assert_allclose(smooth, raw / np.sqrt(raw.max()))


def test_ace_hyperparameters_at_bound_are_named(caplog):
    pytest.importorskip("ace_jax")
    from ace_jax.fit.hypers import Hypers
    from ace_jax.fit.pipeline.mapfit import LBFGS_HI, LBFGS_LO

    from jaxtl.distill.ace import hyperparameters_at_bound, prior_gamma

    inside = Hypers(*(0.5 * (LBFGS_LO + LBFGS_HI)))
    assert hyperparameters_at_bound(inside) == []
    top = inside._replace(log_sigma_c=float(LBFGS_HI[Hypers._fields.index("log_sigma_c")]), log_r0=LBFGS_LO[3])
    with caplog.at_level("WARNING", logger="jaxtl.distill"):
        assert hyperparameters_at_bound(top) == ["log_sigma_c"]
    assert "log_sigma_c ended on a bound" in caplog.text
    with pytest.raises(ValueError, match="must be positive"):
        prior_gamma(np.array([1.0, 0.0]), True)
