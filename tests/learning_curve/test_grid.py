"""`jaxtl learning-curve` on a tiny grid: results files, nesting, kill-and-resume, bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jaxtl.graph import DataError
from jaxtl.learning_curve import (
    ConvergenceSettings,
    DataSettings,
    GridSettings,
    LearningCurveConfig,
    learning_curve,
)

ROOT = Path(__file__).resolve().parents[2]
CELLS = [
    "0.5_scratch_s0",
    "0.5_scratch_s1",
    "0.5_f5_s0",
    "0.5_f5_s1",
    "1_scratch_s0",
    "1_scratch_s1",
    "1_f5_s0",
    "1_f5_s1",
]


def tiny_config(tiny, test=None, **grid) -> LearningCurveConfig:
    grid = {"fractions": (0.5, 1.0), "strategies": ("scratch", "f5"), "seeds": 2, **grid}
    return LearningCurveConfig(
        DataSettings(
            str(tiny["foundation"]), str(tiny["pool"]), str(test or tiny["test"]), valid_fraction=0.2, batch_size=4
        ),
        GridSettings(**grid),
        ConvergenceSettings(patience=5, max_epochs=2),
    )


def cli_args(config: LearningCurveConfig, out: Path) -> list[str]:
    d, g, c = config.data, config.grid, config.convergence
    return [
        "learning-curve",
        "--foundation",
        d.foundation,
        "--train",
        d.train_file,
        "--test",
        d.test_file,
        "--valid-fraction",
        str(d.valid_fraction),
        "--batch-size",
        str(d.batch_size),
        "--fractions",
        *map(str, g.fractions),
        "--strategies",
        *g.strategies,
        "--seeds",
        str(g.seeds),
        "--patience",
        str(c.patience),
        "--max-epochs",
        str(c.max_epochs),
        "--out",
        str(out),
    ]


def table(summary) -> list:
    """The result rows without the timings (which differ between runs)."""
    keep = ("forces_rmse", "energy_rmse", "epochs_to_convergence", "n_trainable")
    return [
        {k: r[k] for k in ("fraction", "strategy", "seeds", "n_train", "n_test", "hit_max_epochs", *keep)}
        for r in summary["rows"]
    ]


@pytest.fixture(scope="module")
def full(tiny, tmp_path_factory):
    """The tiny grid run in one go."""
    out = tmp_path_factory.mktemp("lc") / "full"
    return learning_curve(tiny_config(tiny), out, command="test")


def test_grid_writes_every_cell_and_the_report(full):
    out = full.out_dir
    assert sorted(full.computed) == sorted(CELLS)
    summary = json.loads((out / "results.json").read_text())
    assert summary["n_cells"] == {"finished": 8, "grid": 8}
    for key in ("jaxtl_commit", "command", "device", "versions", "date"):
        assert summary["provenance"][key]
    rows = {(r["fraction"], r["strategy"]): r for r in summary["rows"]}
    assert set(rows) == {(0.5, "scratch"), (0.5, "f5"), (1.0, "scratch"), (1.0, "f5")}
    for r in rows.values():
        assert r["seeds"] == [0, 1] and r["n_test"] == 4 and r["hit_max_epochs"] == 2
        assert r["forces_rmse"]["min"] <= r["forces_rmse"]["mean"] <= r["forces_rmse"]["max"]
        assert r["forces_rmse"]["std"] > 0  # the seeds differ
    assert rows[(0.5, "f5")]["n_trainable"]["mean"] < rows[(0.5, "scratch")]["n_trainable"]["mean"]
    assert rows[(1.0, "f5")]["n_train"] == 16 and rows[(0.5, "f5")]["n_train"] == 8
    md = (out / "results.md").read_text()
    assert "| 50% | 8 | f5 | 2 |" in md and "## Verdict" in md and "- f5: forces RMSE" in md
    assert (out / "learning_curve.png").exists()
    assert LearningCurveConfig.load(out / "grid_config.json") == tiny_config_from(summary)


def tiny_config_from(summary):
    return LearningCurveConfig.from_dict(summary["config"])


def test_cell_data_nest_and_keep_validation_apart(full):
    import ase.io

    def positions(path):
        return {a.positions.tobytes() for a in ase.io.read(path, ":")}

    for seed in (0, 1):
        half = positions(full.out_dir / "cells" / f"0.5_f5_s{seed}" / "train.xyz")
        whole = positions(full.out_dir / "cells" / f"1_f5_s{seed}" / "train.xyz")
        valid = positions(full.out_dir / "cells" / f"1_f5_s{seed}" / "valid.xyz")
        assert len(half) == 8 and len(whole) == 16 and len(valid) == 4
        assert half < whole and not whole & valid
        # scratch and fine-tuning see the same structures
        assert positions(full.out_dir / "cells" / f"0.5_scratch_s{seed}" / "train.xyz") == half
    assert positions(full.out_dir / "cells" / "1_f5_s0" / "valid.xyz") != valid


def test_kill_and_resume_skips_finished_cells(tiny, full, tmp_path, capsys):
    """Half of the full grid done (copied), the rest run by `jaxtl learning-curve`, killed
    once it has finished a cell, then completed by `jaxtl learning-curve --resume OUT` alone."""
    from jaxtl.cli import main

    config = tiny_config(tiny)
    out = tmp_path / "killed"
    shutil.copytree(full.out_dir, out)
    for name in CELLS[4:]:
        shutil.rmtree(out / "cells" / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxtl.cli", *cli_args(config, out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while len(list(out.glob("cells/*/cell.json"))) < 5:
            assert proc.poll() is None and time.time() < deadline, "the grid ended before finishing a cell"
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("cells/*/cell.json")}
    assert 5 <= len(done) < 8
    with pytest.raises(SystemExit):  # a setting the saved run does not have
        main(["learning-curve", "--resume", str(out), "--lr", "0.5"])
    assert "--lr 0.5 conflicts with the resumed run's lr" in capsys.readouterr().err
    assert main(["learning-curve", "--resume", str(out)]) == 0  # the run folder alone
    assert sorted(p.parent.name for p in out.glob("cells/*/cell.json")) == sorted(CELLS)
    assert {n: (out / "cells" / n / "cell.json").stat().st_mtime_ns for n in done} == done
    assert table(json.loads((out / "results.json").read_text())) == table(full.summary)
    # a finished grid returns at once, training nothing
    t0 = time.perf_counter()
    again = learning_curve(config, out, command="test")
    assert again.computed == [] and time.perf_counter() - t0 < 30
    assert table(again.summary) == table(full.summary)


def test_a_cell_another_process_holds_is_left_to_it(tiny, full, tmp_path):
    import socket

    out = tmp_path / "shared"
    shutil.copytree(full.out_dir, out)
    for name in ("0.5_f5_s0", "1_f5_s1"):
        shutil.rmtree(out / "cells" / name)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / "cells" / "1_f5_s1").mkdir()
        claim = {"host": socket.gethostname(), "pid": holder.pid, "since": "now"}
        (out / "cells" / "1_f5_s1" / "claim.json").write_text(json.dumps(claim))
        first = learning_curve(tiny_config(tiny), out, command="test")
        assert first.computed == ["0.5_f5_s0"] and first.held_elsewhere == ["1_f5_s1"]
        assert first.summary["n_cells"]["finished"] == 7
    finally:
        holder.kill()
        holder.wait()
    second = learning_curve(tiny_config(tiny), out, command="test")  # the holder died: taken over
    assert second.computed == ["1_f5_s1"] and second.held_elsewhere == []
    assert not list(out.glob("cells/*/claim.json*"))
    assert table(second.summary) == table(full.summary)


def test_two_processes_share_one_grid(tiny, full, tmp_path):
    """The same command started twice at once: every cell trained once, by one of them."""
    out = tmp_path / "two"
    shutil.copytree(full.out_dir, out)
    for name in CELLS[2:6]:
        shutil.rmtree(out / "cells" / name)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "jaxtl.cli", *cli_args(tiny_config(tiny), out)]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [
        line.split(":")[0].split()[-1] for log in logs for line in log.splitlines() if "training structures" in line
    ]
    assert sorted(trained) == sorted(CELLS[2:6]), logs  # each once
    assert table(json.loads((out / "results.json").read_text())) == table(full.summary)


def test_a_grid_may_grow_but_not_change(tiny, full, tmp_path):
    out = tmp_path / "grown"
    shutil.copytree(full.out_dir, out)
    with pytest.raises(ValueError, match=r"convergence.patience is 5 there, 7 now"):
        learning_curve(
            LearningCurveConfig(
                tiny_config(tiny).data, tiny_config(tiny).grid, ConvergenceSettings(patience=7, max_epochs=2)
            ),
            out,
        )
    grown = learning_curve(tiny_config(tiny, seeds=3), out, max_cells=1)
    assert grown.computed == ["0.5_scratch_s2"]
    assert not (out / "cells" / "0.5_f5_s2").exists()
    # a larger epoch cap continues the capped cells from their checkpoints; a cell whose
    # checkpoint came from another machine names both devices
    assert json.loads((out / "cells" / "0.5_f5_s0" / "devices.json").read_text()) == ["cpu"]
    (out / "cells" / "0.5_f5_s0" / "devices.json").write_text(json.dumps(["gpu: NVIDIA H100 80GB HBM3"]))
    log = out / "cells" / "0.5_f5_s0" / "run" / "metrics.jsonl"
    before = log.read_text().splitlines()
    longer = LearningCurveConfig(
        tiny_config(tiny).data, tiny_config(tiny).grid, ConvergenceSettings(patience=5, max_epochs=3)
    )
    extended = learning_curve(longer, out, first=[(0.5, "f5")], max_cells=1)
    assert extended.computed == ["0.5_f5_s0"]
    after = log.read_text().splitlines()
    assert after[:2] == before and len(after) == 3
    record = json.loads((out / "cells" / "0.5_f5_s0" / "cell.json").read_text())
    assert record["epochs_run"] == 3 and record["resumed"]
    assert record["device"] == "gpu: NVIDIA H100 80GB HBM3 + cpu"
    assert extended.summary["rows"][0]["devices"] == ["gpu: NVIDIA H100 80GB HBM3 + cpu"]
    # the cells still capped at 2 epochs are not reported as finished under a cap of 3
    assert [(r["fraction"], r["strategy"], r["seed"]) for r in extended.records] == [(0.5, "f5", 0)]
    assert extended.summary["n_cells"]["finished"] == 1
    with pytest.raises(ValueError, match=r"convergence.max_epochs is 3 there, 2 now"):
        learning_curve(tiny_config(tiny), out)


def test_bad_input_fails_before_training(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"fraction 0.2 leaves 3 training structures .* batch size 4"):
        learning_curve(tiny_config(tiny, fractions=(0.2, 1.0)), tmp_path / "small")
    with pytest.raises(ValueError, match=r"unknown strategy 'f5x'.*scratch, fN.*lora"):
        learning_curve(tiny_config(tiny, strategies=("scratch", "f5x")), tmp_path / "name")
    with pytest.raises(DataError, match=r"alien_test.xyz, frame 0: element Ni"):
        learning_curve(tiny_config(tiny, test=tiny["alien_test"]), tmp_path / "alien")
    for name in ("small", "name", "alien"):
        assert not (tmp_path / name / "cells").exists()


def test_first_orders_pairs_every_seed_and_single_cells(tiny):
    from jaxtl.cli.learning_curve import parse_first
    from jaxtl.learning_curve.grid import cells_of

    first = parse_first(["1:f5:1", "0.5:scratch", "1:f5:0"])
    assert first == [(1.0, "f5", 1), (0.5, "scratch"), (1.0, "f5", 0)]
    names = [c.name for c in cells_of(tiny_config(tiny), first)]
    assert names[:4] == ["1_f5_s1", "0.5_scratch_s0", "0.5_scratch_s1", "1_f5_s0"]
    assert sorted(names) == sorted(CELLS)
    with pytest.raises(ValueError, match=r"first: 1 f5 seed 2 is not a cell"):
        cells_of(tiny_config(tiny), [(1.0, "f5", 2)])
    for bad in ("1", "1:", "1:f5:x", "1:f5:0:2", "x:f5"):
        with pytest.raises(ValueError, match=rf"--first '{bad}': expected FRACTION:STRATEGY"):
            parse_first([bad])


def test_cells_of_a_lost_or_distant_run_are_imported_from_its_report(tiny, full, tmp_path, capsys):
    """A run folder holding nothing but half of the cells takes the others from the full
    grid's results.json (`--import-cells`), trains nothing and reports the same table."""
    from jaxtl.cli import main
    from jaxtl.learning_curve.merge import import_cells

    config = tiny_config(tiny)
    out = tmp_path / "merged"
    (out / "cells").mkdir(parents=True)
    shutil.copytree(full.out_dir / "cells" / "1_f5_s0", out / "cells" / "1_f5_s0")
    local = (out / "cells" / "1_f5_s0" / "cell.json").read_text()
    report = full.out_dir / "results.json"
    assert main([*cli_args(config, out), "--import-cells", str(report)]) == 0
    assert "8 of 8 cells finished (0 trained now)" in capsys.readouterr().out
    assert (out / "cells" / "1_f5_s0" / "cell.json").read_text() == local  # finished here: kept
    record = json.loads((out / "cells" / "0.5_scratch_s1" / "cell.json").read_text())
    assert record["imported_from"] == {"file": str(report), "report_commit": full.summary["provenance"]["jaxtl_commit"]}
    assert table(json.loads((out / "results.json").read_text())) == table(full.summary)
    assert import_cells(config, out, report) == []  # nothing left to take

    other = LearningCurveConfig(config.data, config.grid, ConvergenceSettings(patience=7, max_epochs=2))
    with pytest.raises(ValueError, match=r"results.json holds a grid with other settings: convergence.patience is 5"):
        import_cells(other, tmp_path / "other", report)
    # records capped below a larger cap here do not stand: none taken
    longer = LearningCurveConfig(config.data, config.grid, ConvergenceSettings(patience=5, max_epochs=3))
    assert import_cells(longer, tmp_path / "longer", report) == []
    (tmp_path / "bad.json").write_text(json.dumps({"config": config.to_dict(), "cells": [{"fraction": 0.5}]}))
    with pytest.raises(ValueError, match=r"bad.json: cells\[0\] has no 'strategy'"):
        import_cells(config, tmp_path / "bad", tmp_path / "bad.json")
    with pytest.raises(ValueError, match="not a learning-curve results.json"):
        import_cells(config, tmp_path / "bad", tmp_path / "merged" / "grid_config.json")


def test_status_tells_finished_training_interrupted_and_pending_cells(full, tmp_path, capsys):
    import socket

    from jaxtl.cli import main
    from jaxtl.learning_curve.status import grid_status

    out = tmp_path / "watched"
    shutil.copytree(full.out_dir, out)
    (out / "cells" / "0.5_f5_s0" / "cell.json").unlink()  # begun, no live claim
    (out / "cells" / "1_f5_s1" / "cell.json").unlink()
    shutil.rmtree(out / "cells" / "1_scratch_s1")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        claim = {"host": socket.gethostname(), "pid": holder.pid, "since": "now"}
        (out / "cells" / "1_f5_s1" / "claim.json").write_text(json.dumps(claim))
        rows = {r["cell"]: r for r in grid_status(out)}
        assert main(["learning-curve", "--status", "--out", str(out)]) == 0
    finally:
        holder.kill()
        holder.wait()
    assert list(rows) == CELLS
    states = {name: r["state"] for name, r in rows.items()}
    assert states == {
        **dict.fromkeys(CELLS, "finished"),
        "0.5_f5_s0": "interrupted",
        "1_f5_s1": "training",
        "1_scratch_s1": "pending",
    }
    assert rows["1_f5_s1"]["pid"] == holder.pid and rows["1_f5_s1"]["epochs"] == 2
    record = next(r for r in full.records if (r["fraction"], r["strategy"], r["seed"]) == (1.0, "scratch", 0))
    assert rows["1_scratch_s0"]["forces_rmse"] == record["forces_rmse"]
    assert rows["1_scratch_s1"]["epochs"] == 0 and rows["1_scratch_s1"]["forces_rmse"] is None
    printed = capsys.readouterr().out
    assert printed.startswith("5 finished, 1 training, 1 interrupted, 1 pending (of 8 cells)")
    assert f"pid {holder.pid}" in printed and "2/2" in printed
    assert not (out / "cells" / "1_scratch_s1").exists()  # nothing written
    with pytest.raises(FileNotFoundError, match="no learning-curve grid here"):
        grid_status(tmp_path)
