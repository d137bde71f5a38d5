"""The uncertainty-driven loop (fast settings): rounds grow the labelled set, never from held-out
starts; an interrupted loop resumes without labelling again; a NaN teacher keeps its labels."""

import json
import os
import shutil
import sys

import ase.io
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu, write_structures  # noqa: E402

from jaxtl.distill import (  # noqa: E402
    ACEStudentConfig,
    DistillConfig,
    DistillDataConfig,
    SamplingConfig,
    SamplingPlan,
    SpeedConfig,
    TeacherConfig,
    distill,
)
from jaxtl.distill.active import ActiveConfig, active_learning, training_starts  # noqa: E402
from jaxtl.distill.committee import force_disagreement, rank_correlation, select_frames  # noqa: E402
from jaxtl.distill.labelling import LabellingError  # noqa: E402
from jaxtl.distill.splits import split_labelled  # noqa: E402
from jaxtl.graph.io import DataError  # noqa: E402

TINY_ACE = dict(order=2, degree=5, r_max=4.0, map_steps=20, solver="qr")
HELD_OUT = 2
ACTIVE = ActiveConfig(
    rounds=2,
    frames=3,
    initial=4,
    md=SamplingConfig(md_steps=30, temperature=300.0, keep_every=5),
    committee=2,
    min_separation=10,
    check_structures=4,
)


@pytest.fixture(scope="module")
def active_run(teacher_dir, tmp_path_factory):
    """`distill` with the loop: teacher MD from three starts (the third held out), 2 rounds of 3 frames."""
    pytest.importorskip("ace_jax", reason="ACE students need the ace extra")
    out = tmp_path_factory.mktemp("active")
    starts = write_structures(out / "starts.xyz", [h_on_cu(i, periodic=False) for i in range(3)])
    config = DistillConfig(
        TeacherConfig(str(teacher_dir)),
        DistillDataConfig(starts=(starts,), label_batch_size=2),
        SamplingPlan(SamplingConfig(md_steps=30, temperature=300.0, keep_every=5), held_out_starts=(HELD_OUT,)),
        ACEStudentConfig(**TINY_ACE),
        speed=SpeedConfig(structures=1, repeats=1),
        active=ACTIVE,
    )
    return out / "run", config, distill(config, out / "run", progress=False)


def test_each_round_labels_k_frames_of_training_trajectories_only(active_run):
    run, _, report = active_run
    rounds = report["active"]["rounds"]
    assert [r["n_train"] for r in rounds] == [4, 7]
    assert report["active"]["teacher_labels"] == 10 and report["n_structures"]["train_and_valid"] == 10
    assert len(ase.io.read(run / "train.xyz", ":")) == 10
    assert json.loads((run / "active" / "rounds.json").read_text())["rounds"] == rounds
    for r in rounds:
        assert len(r["chosen"]) == 3 and r["n_candidates"] == 2 * 6  # 2 training starts, 30 steps / 5
        assert all(c["sample_start"] != HELD_OUT for c in r["chosen"])
        for a in r["chosen"]:
            for b in r["chosen"]:
                if a is not b and a["sample_start"] == b["sample_start"]:
                    assert abs(a["md_step"] - b["md_step"]) >= ACTIVE.min_separation
        assert set(r["errors"]) == {"test_independent_runs", "test_held_out_starts"}
        assert all(np.isfinite(e["forces_rmse"]) for e in r["errors"].values())
        assert all(c["n"] == 4 for c in r["score_vs_error"].values())
    for r in range(2):
        labelled = ase.io.read(run / "active" / f"round_{r:03d}" / "labelled.xyz", ":")
        assert len(labelled) == 3 and all("REF_forces" in a.arrays for a in labelled)
        assert {a.info["active_round"] for a in labelled} == {r}
    # the loop's own student MD started from the training starts, never the held-out one
    assert {a.info["sample_start"] for a in training_starts(_split(run)[0])} == {0, 1}
    assert report["student_vs_teacher"]["n_graphs"] == sum(report["n_structures"]["test_sets"].values())


def _split(run):
    return split_labelled(ase.io.read(run / "labelled.xyz", ":"))[:2]


def test_an_interrupted_loop_resumes_without_labelling_again(active_run, tmp_path, monkeypatch):
    """Stopped in round 1 after one of its three labels: the resumed loop fits nothing it
    fitted, runs no MD it ran, labels the two missing frames only, and ends where the
    uninterrupted loop did."""
    import jaxtl.distill.ace as ace
    import jaxtl.distill.active as active
    import jaxtl.md.ase_md as ase_md

    run, config, report = active_run
    shutil.copytree(run, tmp_path / "run")
    loop = tmp_path / "run" / "active"
    for name in ("round_001/round.json", "rounds.json"):
        (loop / name).unlink()
    (tmp_path / "run" / "report.json").unlink()
    shutil.rmtree(tmp_path / "run" / "student")
    kept = ase.io.read(loop / "round_001" / "labelled.xyz", ":")[:1]
    ase.io.write(loop / "round_001" / "labelled.xyz", kept, format="extxyz")

    labelled_now = []
    label = active.label_structures

    def counting(teacher, structures, *args, **kwargs):
        labelled_now.extend(structures)
        return label(teacher, structures, *args, **kwargs)

    fit = ace.fit_ace_student

    def final_fit_only(train, *args, **kwargs):
        assert len(train) == 10, "a finished round's student was fitted again"
        return fit(train, *args, **kwargs)

    def refused(*args, **kwargs):
        raise AssertionError("a finished round's MD ran again")

    monkeypatch.setattr(active, "label_structures", counting)
    monkeypatch.setattr(ace, "fit_ace_student", final_fit_only)
    monkeypatch.setattr(ase_md, "run_ase_md", refused)
    again = distill(config, tmp_path / "run", resume=True, progress=False)
    assert len(labelled_now) == 2
    assert [r["n_train"] for r in again["active"]["rounds"]] == [4, 7]
    assert again["active"]["rounds"][1]["chosen"] == report["active"]["rounds"][1]["chosen"]
    np.testing.assert_allclose(
        again["student_vs_teacher"]["forces_rmse"], report["student_vs_teacher"]["forces_rmse"], rtol=1e-6
    )


class _NaNAfter:
    """The teacher, giving NaN energies from its `good`-th call on."""

    def __init__(self, model, good: int):
        self.model, self.good = model, good

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, graph, **kwargs):
        out = dict(self.model.predict(graph, **kwargs))
        if self.good <= 0:
            out["energy"] = out["energy"] * np.nan
        self.good -= 1
        return out


def test_a_nan_teacher_mid_loop_keeps_what_was_labelled(active_run, teacher, tmp_path):
    """NaN on the second label of round 0: an error naming the round, the frame and the file;
    the label before it kept; a resumed loop with a working teacher labels the rest only."""
    run, config, _ = active_run
    train, tests = _split(run)
    one_round = ActiveConfig(**{**ACTIVE.to_dict(), "rounds": 1})
    student = ACEStudentConfig(**TINY_ACE)
    # round 0 as the fixture's loop left it before labelling: its fit, MD and choice are reused
    shutil.copy(run / "active" / "initial.xyz", tmp_path)
    shutil.copytree(
        run / "active" / "round_000",
        tmp_path / "round_000",
        ignore=shutil.ignore_patterns("labelled.xyz", "round.json"),
    )
    with pytest.raises(LabellingError, match=r"round_000.*chosen.xyz, frame 1.*1 structures labelled") as err:
        active_learning(_NaNAfter(teacher, good=1), train, tests, one_round, student, tmp_path, label_batch_size=1)
    assert len(err.value.labelled) == 1
    assert len(ase.io.read(tmp_path / "round_000" / "labelled.xyz", ":")) == 1
    assert not (tmp_path / "round_000" / "round.json").exists()
    good = _NaNAfter(teacher, good=10**6)
    final, rounds = active_learning(good, train, tests, one_round, student, tmp_path, label_batch_size=1)
    assert good.good == 10**6 - 2 and len(final) == 4 + 3 and rounds[0]["n_train"] == 4


def test_a_test_element_outside_the_student_basis_is_named(active_run, teacher, tmp_path):
    run, _, _ = active_run
    train, tests = _split(run)
    alien = tests["test_independent_runs"][0].copy()
    alien.numbers[0] = 47
    with pytest.raises(DataError, match=r"test set odd, frame 0: element Ag"):
        active_learning(teacher, train, {"odd": [alien]}, ACTIVE, ACEStudentConfig(**TINY_ACE), tmp_path)


def test_selection_spreads_frames_and_puts_blow_ups_first():
    scores = [0.1, 0.9, 0.8, np.inf, 0.7, np.nan, 0.5]
    trajectories = [0, 0, 0, 1, 1, 1, 0]
    steps = [10, 20, 30, 10, 40, 50, 80]
    assert select_frames(scores, trajectories, steps, 3, min_separation=20) == [3, 1, 4]
    assert select_frames(scores, trajectories, steps, 10, min_separation=20) == [3, 1, 4, 6]  # NaN never
    assert select_frames(scores, trajectories, steps, 3, min_separation=0) == [3, 1, 2]


def test_force_disagreement_and_rank_correlation():
    forces = np.zeros((2, 3, 3))
    forces[0, 1] = [0.3, 0.0, 0.4]  # atom 1: members 0.5 apart, std 0.25
    assert force_disagreement(forces) == pytest.approx(0.25)
    assert force_disagreement(np.ones((4, 5, 3))) == 0.0
    assert rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 2], [1, 2]) is None


def test_active_config_round_trips_and_needs_an_ace_student():
    from jaxtl.distill.config import MACEStudentConfig

    config = DistillConfig("t", DistillDataConfig(starts=("s.xyz",)), student=ACEStudentConfig(), active=ACTIVE)
    assert DistillConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="ACEStudentConfig"):
        DistillConfig("t", DistillDataConfig(starts=("s.xyz",)), student=MACEStudentConfig(), active=ACTIVE)
    with pytest.raises(ValueError, match="committee must be >= 2"):
        ActiveConfig(committee=1)


def test_cli_active_options():
    import argparse

    from jaxtl.cli.distill import active_config, add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    flags = ["distill", "--teacher", "t", "--out", "o", "--student", "ace", "--temperature", "500"]
    assert active_config(parser.parse_args(flags)) is None
    args = parser.parse_args(
        flags + ["--active-rounds", "3", "--active-frames", "7", "--active-initial", "20", "--keep-every", "5"]
    )
    config = active_config(args)
    assert (config.rounds, config.frames, config.initial, config.committee) == (3, 7, 20, 4)
    assert config.md.temperature == 500.0 and config.md.keep_every == 5 and config.md.md_steps == 500


class _Scaled:
    """A stand-in committee member: forces `scale` x positions (eV/A), so members disagree
    more the further the atoms are from the origin."""

    def __init__(self, scale: float):
        from ase.calculators.calculator import Calculator

        class Scaled(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=None):
                super().calculate(atoms, properties, system_changes or [])
                self.results = {"energy": 0.0, "forces": scale * self.atoms.positions}

        self.calc = Scaled()


def test_a_blown_up_student_md_keeps_its_frames_and_ranks_them_first(monkeypatch, tmp_path):
    """The second start's student MD blows up after step 15: its frames so far are
    candidates, and the last of them is chosen first although others score higher."""
    import jaxtl.distill.active as active
    import jaxtl.md.ase_md as ase_md
    from jaxtl.md.simulate import MDResult

    def fake_md(calc, atoms, md, progress=False):
        frames = []
        for step in range(0, md.steps + 1, md.save_every):
            frame = atoms.copy()
            frame.positions += 0.1 * step * (1 - md.seed)  # start 0 drifts: the higher scores
            frame.info["md_step"] = step
            frames.append(frame)
        error = "MD stopped at step 17: two atoms came 0.4 A apart" if md.seed == 1 else None
        frames = frames[:4] if error else frames
        zeros = np.zeros(len(frames))
        return MDResult(frames, zeros, zeros, zeros, zeros, 5 * (len(frames) - 1), error, len(atoms))

    monkeypatch.setattr(ase_md, "run_ase_md", fake_md)
    starts = [h_on_cu(i, periodic=False) for i in range(2)]
    for i, a in enumerate(starts):
        a.info["sample_start"] = i
    config = ActiveConfig(**{**ACTIVE.to_dict(), "frames": 2, "min_separation": 0})
    candidates, runs = active._candidates(None, starts, config, tmp_path, 0, progress=False)
    assert [r["n_frames"] for r in runs] == [6, 3] and runs[1]["error"] and not runs[0]["error"]
    assert [a.info["blow_up"] for a in candidates] == [False] * 8 + [True]
    members = [_Scaled(1.0).calc, _Scaled(1.1).calc]
    chosen = active._chosen(candidates, members, config, tmp_path)
    assert (chosen[0].info["sample_start"], chosen[0].info["md_step"], chosen[0].info["score"]) == (1, 15, np.inf)
    assert (chosen[1].info["sample_start"], chosen[1].info["md_step"]) == (0, 30)  # the highest finite score
    assert len(ase.io.read(tmp_path / "chosen.xyz", ":")) == 2
