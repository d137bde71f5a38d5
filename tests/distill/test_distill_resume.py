"""DistillConfig round trips, and a distillation stopped at each step resumes to the report
of an uninterrupted run without redoing finished steps."""

import json
import os
import sys
from collections import Counter

import ase.io
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from hcu import h_on_cu, write_structures  # noqa: E402

import jaxtl.distill.labelled_set as labelled_set  # noqa: E402
import jaxtl.train.run as train_run  # noqa: E402
from jaxtl.distill import (  # noqa: E402
    ACEStudentConfig,
    DistillConfig,
    DistillDataConfig,
    MACEStudentConfig,
    SamplingConfig,
    SamplingPlan,
    SpeedConfig,
    distill,
)
from jaxtl.train.checkpoint import LATEST, Checkpointer  # noqa: E402
from jaxtl.train.config import TrainConfig  # noqa: E402

TINY_STUDENT = dict(hidden_irreps="4x0e", radial_MLP=(8,), correlation=1, MLP_irreps="4x0e", num_bessel=4)


class Stopped(Exception):
    """Stands in for a run killed at a chosen point."""


def tiny_config(teacher_dir, starts) -> DistillConfig:
    """3 starts, 4 MD steps each (every 2nd frame kept), a 2-epoch 4x0e MACE student."""
    return DistillConfig(
        str(teacher_dir),
        DistillDataConfig(starts=(starts,), label_batch_size=3),
        SamplingPlan(SamplingConfig(md_steps=4, keep_every=2, check_every=2, temperature=300)),
        MACEStudentConfig(model=TINY_STUDENT, train=TrainConfig(max_num_epochs=2, plot=False), batch_size=4),
        SpeedConfig(structures=2, repeats=1),
    )


@pytest.fixture(scope="module")
def starts(tmp_path_factory):
    return write_structures(
        tmp_path_factory.mktemp("starts") / "starts.xyz", [h_on_cu(i, periodic=False) for i in range(3)]
    )


@pytest.fixture(scope="module")
def uninterrupted(teacher_dir, starts, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, distill(tiny_config(teacher_dir, starts), out, progress=False)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the expensive steps (MD sampling, labelling, training) and the number of
    structures each labelling call got."""
    counts = Counter()
    labelled = []
    real_sample, real_label, real_train = (
        labelled_set.sample_plan,
        labelled_set.label_structures,
        train_run.train_from_scratch,
    )

    def sample_plan(*args, **kwargs):
        counts["sample_plan"] += 1
        return real_sample(*args, **kwargs)

    def label_structures(teacher, structures, *args, **kwargs):
        counts["label_structures"] += 1
        labelled.append(len(structures))
        return real_label(teacher, structures, *args, **kwargs)

    def train_from_scratch(*args, **kwargs):
        counts["train_from_scratch"] += 1
        counts["train_resumed"] += bool(kwargs.get("resume"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(labelled_set, "sample_plan", sample_plan)
    monkeypatch.setattr(labelled_set, "label_structures", label_structures)
    monkeypatch.setattr(train_run, "train_from_scratch", train_from_scratch)
    return counts, labelled


def assert_same_report(a: dict, b: dict) -> None:
    """Everything but timings equal (errors to float32 round-off of the labels' 8 decimals)."""
    for key in ("n_structures", "test_split", "student_kind", "student_config", "n_parameters"):
        assert a[key] == b[key], key
    assert a["training"]["epochs"] == b["training"]["epochs"]
    for name in ("student_vs_teacher", *(f"student_vs_teacher_by_set.{s}" for s in a["student_vs_teacher_by_set"])):
        x, y = a, b
        for part in name.split("."):
            x, y = x[part], y[part]
        assert x.keys() == y.keys()
        np.testing.assert_allclose([x[k] for k in sorted(x)], [y[k] for k in sorted(y)], rtol=1e-5, err_msg=name)
    assert a["sampling"]["counts"] == b["sampling"]["counts"]


def test_stopped_in_labelling_then_in_training_resumes_to_the_same_report(
    teacher_dir, starts, uninterrupted, calls, monkeypatch, tmp_path
):
    counts, labelled = calls
    config, out = tiny_config(teacher_dir, starts), tmp_path / "run"
    reference_out, reference = uninterrupted

    real_label = labelled_set.label_structures  # the counting one

    def stop_after_six(teacher, structures, *args, **kwargs):
        real_label(teacher, structures[:6], *args, **kwargs)  # two batches of 3 written
        raise Stopped("killed while labelling")

    monkeypatch.setattr(labelled_set, "label_structures", stop_after_six)
    with pytest.raises(Stopped):
        distill(config, out, progress=False)
    assert len(ase.io.read(out / "labelled.xyz", ":")) == 6 and (out / "distill_config.yaml").exists()

    real_save = Checkpointer.save

    def stop_after_epoch_one(self, name, step, *args):
        real_save(self, name, step, *args)
        if name == LATEST and step == 1:
            raise Stopped("killed while training")

    monkeypatch.setattr(labelled_set, "label_structures", real_label)
    monkeypatch.setattr(Checkpointer, "save", stop_after_epoch_one)
    with pytest.raises(Stopped):
        distill(config, out, resume=True, progress=False)
    assert counts["sample_plan"] == 1  # the first run's only
    n = reference["n_structures"]["labelled"]
    assert labelled == [6, n - 6]  # the resumed run labelled only the rest
    assert not (out / "student" / "model").exists()

    monkeypatch.setattr(Checkpointer, "save", real_save)
    report = distill(config, out, resume=True, progress=False)
    assert counts == Counter(sample_plan=1, label_structures=2, train_from_scratch=2, train_resumed=1)
    assert report["training"]["resumed"] and not reference["training"]["resumed"]
    assert_same_report(report, reference)
    ours, theirs = ase.io.read(out / "labelled.xyz", ":"), ase.io.read(reference_out / "labelled.xyz", ":")
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_allclose(a.arrays["REF_forces"], b.arrays["REF_forces"], atol=2e-8)

    again = distill(config, out, resume=True, progress=False)  # finished: its report, nothing redone
    assert again["wall_s"] == report["wall_s"] == json.loads((out / "report.json").read_text())["wall_s"]
    assert counts["train_from_scratch"] == 2 and counts["label_structures"] == 2


def test_resume_with_other_settings_names_them(teacher_dir, starts, uninterrupted):
    out, _ = uninterrupted
    config = tiny_config(teacher_dir, starts)
    other = config.replace(
        data=DistillDataConfig(starts=config.data.starts, label_batch_size=3, test_fraction=0.3),
        student=config.student.replace(model={**TINY_STUDENT, "hidden_irreps": "8x0e"}),
    )
    with pytest.raises(ValueError, match=r"data.test_fraction, student.model.hidden_irreps differ"):
        distill(other, out, resume=True, progress=False)
    longer = config.replace(student=config.student.replace(train=config.student.train.replace(max_num_epochs=3)))
    assert config.differences(longer) == []  # lengthening a student's training is a resume
    moved = config.replace(student=config.student.replace(train=config.student.train.replace(n_devices=2)))
    assert config.differences(moved) == []  # so is training on other devices: the global batch stays
    with pytest.raises(ValueError, match="multiple of train.n_devices"):
        config.student.replace(batch_size=3, train=config.student.train.replace(n_devices=2))


def test_cli_resume_takes_the_saved_settings(teacher_dir, starts, uninterrupted, capsys, calls):
    """`jaxtl distill --resume RUN_DIR` runs with RUN_DIR/distill_config.yaml; settings next to
    it, and a new run into a folder holding one, are refused."""
    from jaxtl.cli import main

    counts, _ = calls
    out, reference = uninterrupted
    assert main(["distill", "--resume", str(out), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["student_vs_teacher"] == reference["student_vs_teacher"]
    assert sum(counts.values()) == 0  # a finished run: its report
    assert main(["distill", "--resume", str(out), "--md-steps", "8", "--student-max-ell", "2"]) == 2
    err = capsys.readouterr().err
    assert "drop --md-steps, --student-max-ell" in err and "distill_config.yaml" in err
    assert main(["distill", "--teacher", str(teacher_dir), "--structures", starts, "--out", str(out)]) == 2
    assert f"use --resume {out}" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(teacher_dir), "--structures", starts, "--out", str(out), "--resume"]) == 2
    assert "student.model.hidden_irreps, student.model.num_bessel" in capsys.readouterr().err  # the flags' config
    assert main(["distill", "--structures", starts]) == 2
    assert "--teacher, --out" in capsys.readouterr().err


def test_cli_resume_treats_a_flag_typed_with_its_default_value_as_given(uninterrupted, capsys, calls):
    """Next to --resume RUN_DIR, an option on the command line is given whatever its value:
    `--lr 0.01` and `--student mace` (the defaults) are refused like any other setting;
    --devices and --epochs, which a resumed run may change, are taken from the command line."""
    from jaxtl.cli import main, parse_args
    from jaxtl.cli.distill import run_settings

    counts, _ = calls
    out, _ = uninterrupted
    assert main(["distill", "--resume", str(out), "--lr", "0.01", "--student", "mace"]) == 2
    assert "drop --lr, --student" in capsys.readouterr().err
    config, folder, resume = run_settings(parse_args(["distill", "--resume", str(out), "--devices", "2"]))
    saved = config.load(out / "distill_config.yaml")
    assert (
        (folder, resume) == (out, True) and config.student.train.n_devices == 2 and saved.student.train.n_devices == 1
    )
    assert config.student.batch_size == saved.student.batch_size == 4  # the global batch
    epochs = run_settings(parse_args(["distill", "--resume", str(out), "--epochs", "100"]))[0].student.train
    assert epochs.max_num_epochs == 100 != saved.student.train.max_num_epochs  # 100, the default, typed
    assert main(["distill", "--resume", str(out), "--devices", "1", "--quiet"]) == 0  # finished: its report
    assert sum(counts.values()) == 0


def test_config_yaml_loads_each_student_kind_back(tmp_path):
    data = DistillDataConfig(starts=("a.xyz",))
    for student in (MACEStudentConfig(model={"hidden_irreps": "8x0e"}), ACEStudentConfig(order=2, r0={1: 0.7})):
        config = DistillConfig("teacher", data, SamplingConfig(md_steps=10), student)
        config.save(tmp_path / "c.yaml")
        again = DistillConfig.load(tmp_path / "c.yaml")
        assert again == config and type(again.student) is type(student)
    assert config.sampling == SamplingPlan(SamplingConfig(md_steps=10))
    text = (tmp_path / "c.yaml").read_text().replace("kind: ace", "kind: gap")
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ValueError, match="kind 'gap' is none of"):
        DistillConfig.load(tmp_path / "c.yaml")
    with pytest.raises(ValueError, match="starts .* or a labelled_file"):
        DistillDataConfig()
    with pytest.raises(ValueError, match="sampling and data.labelled_file"):
        DistillConfig("teacher", DistillDataConfig(labelled_file="l.xyz"), SamplingConfig(md_steps=10))


def test_a_frame_cut_short_is_labelled_again(teacher, tmp_path):
    """labelled.xyz of a killed run: whole frames are kept, a cut one is dropped, and labels
    of other structures are refused."""
    from jaxtl.distill.labelled_set import labelled_so_far
    from jaxtl.distill.labelling import label_structures

    candidates = [h_on_cu(i) for i in range(4)]
    path = tmp_path / "labelled.xyz"
    label_structures(teacher, candidates, path)
    text = path.read_text()
    for cut in (40, 3):  # a line cut short, a number cut short (it parses)
        path.write_text(text[: len(text) - cut])
        assert labelled_so_far(path, candidates, tmp_path / "sampled.xyz") == 3
        assert len(ase.io.read(path, ":")) == 3 and path.read_text().endswith("\n")
    with pytest.raises(ValueError, match="frame 1: not frame 1 of .*sampled.xyz"):
        labelled_so_far(path, [candidates[0], h_on_cu(7), *candidates[2:]], tmp_path / "sampled.xyz")
