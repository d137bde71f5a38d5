"""Spread over seeds and the verdict against scratch at the largest fraction."""

from jaxtl.learning_curve import DataSettings, GridSettings, LearningCurveConfig
from jaxtl.learning_curve.report import summarise, verdict, write_report


def _record(fraction, strategy, seed, forces):
    return {
        "fraction": fraction,
        "strategy": strategy,
        "seed": seed,
        "n_train": 100 * fraction,
        "n_test": 5,
        "hit_max_epochs": False,
        "device": "cpu",
        "forces_rmse": forces,
        "energy_rmse": forces / 10,
        "forces_mae": None,
        "energy_mae": None,
        "stress_rmse": None,
        "epochs_to_convergence": 10,
        "epochs_run": 30,
        "wall_s": 1.0,
        "train_s": 100.0 + seed,
        "n_trainable": 7,
    }


def test_verdict_is_the_smallest_fraction_within_scratch_spread():
    config = LearningCurveConfig(
        DataSettings("f", "p", "t"),
        GridSettings(fractions=(0.1, 0.5, 1.0), strategies=("scratch", "f5", "f6"), seeds=2),
    )
    forces = {
        ("scratch", 1.0): (40, 44),
        ("scratch", 0.5): (60, 70),
        ("scratch", 0.1): (90, 99),
        ("f5", 0.1): (50, 52),
        ("f5", 0.5): (43, 45),
        ("f5", 1.0): (30, 31),
        ("f6", 0.1): (80, 90),
        ("f6", 0.5): (70, 75),
        ("f6", 1.0): (60, 61),
    }
    records = [_record(f, s, seed, v[seed]) for (s, f), v in forces.items() for seed in (0, 1)]
    rows = summarise(records, config)
    ref = next(r for r in rows if r["strategy"] == "scratch" and r["fraction"] == 1.0)
    assert ref["forces_rmse"]["mean"] == 42 and abs(ref["forces_rmse"]["std"] - 8**0.5) < 1e-12
    assert (ref["forces_rmse"]["min"], ref["forces_rmse"]["max"]) == (40, 44)
    v = verdict(rows, "forces_rmse", config)
    assert v["f5"]["fraction"] == 0.5  # 44 <= 42 + 2.83; 51 is not
    assert v["f6"]["fraction"] is None
    # a partial grid: scratch at 100 % lacks a seed, so there is no verdict yet ...
    partial = summarise(
        [r for r in records if (r["strategy"], r["fraction"], r["seed"]) != ("scratch", 1.0, 1)], config
    )
    assert verdict(partial, "forces_rmse", config) == {"pending": "scratch at 100% has 1 of 2 seeds finished"}
    # ... and a strategy's fraction counts only with every seed finished
    missing = summarise([r for r in records if (r["strategy"], r["fraction"], r["seed"]) != ("f5", 0.5, 1)], config)
    assert verdict(missing, "forces_rmse", config)["f5"]["fraction"] == 1.0
    assert verdict(missing, "forces_rmse", config)["f5"]["fractions_complete"] == [0.1, 1.0]
    assert v["f5"]["capped"] == {"reference": 0, "match": 0} and v["f6"]["capped"]["match"] is None


def test_verdict_says_when_the_reference_stopped_at_the_cap(tmp_path):
    config = LearningCurveConfig(
        DataSettings("f", "p", "t"), GridSettings(fractions=(0.5, 1.0), strategies=("scratch", "f5"), seeds=2)
    )
    records = [_record(f, s, seed, 10.0 + seed) for f in (0.5, 1.0) for s in ("scratch", "f5") for seed in (0, 1)]
    write_report(tmp_path, config, records, "cmd", "abc123", with_plot=False)
    assert "not converged" not in (tmp_path / "results.md").read_text()
    capped = [{**r, "hit_max_epochs": r["strategy"] == "scratch" and r["fraction"] == 1.0} for r in records]
    summary = write_report(tmp_path, config, capped, "cmd", "abc123", with_plot=False)
    assert summary["verdict"]["forces_rmse"]["f5"]["capped"] == {"reference": 2, "match": 0}
    md = (tmp_path / "results.md").read_text()
    assert "**not converged**: 2 of the reference's seeds stopped at the epoch cap, still improving" in md


def test_report_says_when_cells_ran_on_other_devices(tmp_path):
    config = LearningCurveConfig(
        DataSettings("f", "p", "t"), GridSettings(fractions=(1.0,), strategies=("scratch", "f5"), seeds=2)
    )
    records = [_record(1.0, s, seed, 10.0 + seed) for s in ("scratch", "f5") for seed in (0, 1)]
    summary = write_report(tmp_path, config, records, "jaxtl learning-curve ...", "abc123", with_plot=False)
    md = (tmp_path / "results.md").read_text()
    assert "different devices" not in md and "abc123" in md and "jaxtl learning-curve ..." in md
    assert summary["verdict"]["forces_rmse"]["f5"]["fraction"] == 1.0
    records[-1] = {**records[-1], "device": "gpu: NVIDIA H100"}
    write_report(tmp_path, config, records, "cmd", "abc123", with_plot=False)
    md = (tmp_path / "results.md").read_text()
    assert "**Cells ran on different devices** (cpu; gpu: NVIDIA H100)" in md
    assert "| 100% | 100 | f5 | 2 | 7 | 1.05 ± 0.07 [1.00, 1.10] | 10.5 ± 0.7 [10.0, 11.0] |" in md
    # the time column is the epochs' time over every run of a cell, not the last run's wall time
    assert "| 0 of 2 | 100 ± 1 [100, 101] |" in md and "training time (s)" in md
    assert md.rstrip().endswith("`cmd`") or "Command: `cmd`" in md


def test_report_names_the_commits_and_imports_of_its_cells(tmp_path):
    config = LearningCurveConfig(
        DataSettings("f", "p", "t"), GridSettings(fractions=(1.0,), strategies=("f5",), seeds=3)
    )
    records = [
        {**_record(1.0, "f5", seed, 10.0), "jaxtl_commit": commit, "date": date}
        for seed, commit, date in ((0, "a" * 40, "2026-12-06T21:09:12+0000"), (1, "a" * 40, "2026-12-07T01:00:00"))
    ]
    records.append(
        {
            **_record(1.0, "f5", 2, 10.0),
            "jaxtl_commit": "b" * 40 + "+dirty",
            "date": "2026-12-05T10:00:00",
            "imported_from": {"file": "other/results.json", "report_commit": "c" * 40},
        }
    )
    write_report(tmp_path, config, records, "cmd", "abc123", with_plot=False)
    md = (tmp_path / "results.md").read_text()
    assert (
        "Cells trained at jaxtl aaaaaaaaaaaa (2), bbbbbbbbbbbb+dirty (1), 2026-12-05 to 2026-12-07; "
        "imported from other runs' reports: 1 from other/results.json." in md
    )
    assert "Report: jaxtl abc123;" in md
