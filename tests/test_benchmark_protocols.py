"""The benchmark scripts: each answers --help (its imports resolve), speed.py and the training-step
benchmark run in their fast settings with the provenance every results file records, and
mace-torch in a process of its own (benchmarks/_child.py) computes what it does in ours."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mirror import needs

from jaxtl import _allocator

ROOT = Path(__file__).resolve().parents[1]


@needs("mlearn-Si-train")
def test_train_step_benchmark_with_torch_in_its_own_process(tmp_path):
    """Same weights and batch in the child: the two codes' float64 losses agree step for step,
    and the child ran without jaxtl's glibc tunables or heap settings."""
    out = tmp_path / "train_step"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_train_step.py"),
            "--hidden",
            "8x0e",
            "--dtypes",
            "float64",
            "--structures",
            "2",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--torch-process",
            "own",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert row["torch_process"] == "own"
    assert not set(row["torch_glibc_tunables"].split(":")) & set(_allocator.TUNABLES)
    assert row["torch_jaxtl_heap_settings"] is False  # nor jaxtl's mallopt settings
    assert len(row["torch_losses"]) == len(row["jaxtl_losses"]) == 3  # first step, then 2 timed
    assert row["loss_rel_diff_first"] < 1e-12 and row["loss_rel_diff_last"] < 1e-12, row
    assert row["torch_losses"][0] != row["torch_losses"][-1]  # the optimiser moved the weights


SCRIPTS = sorted(
    p
    for p in [*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "benchmarks" / "dev").glob("*.py")]
    if not p.name.startswith("_")
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks")))
def test_benchmark_script_answers_help(script):
    """Every script in benchmarks/ and benchmarks/dev/ imports what it needs (the shared
    harness included) and parses its arguments."""
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout


def test_speed_benchmark_records_parity_and_provenance(tmp_path):
    """benchmarks/speed.py on the MP-0-small-shaped model in float64: jaxtl's and mace-torch's
    forces agree to round-off, and the results files carry commit, command, versions and date."""
    pytest.importorskip("mace", reason="the benchmark times mace-torch")
    out = tmp_path / "speed"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "speed.py"),
            "--models",
            "small",
            "--dtypes",
            "float64",
            "--tasks",
            "forces",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    (row,) = result["rows"]
    assert row["model"] == "small" and row["backend"] == "xla" and row["device"] == "cpu"
    assert row["jaxtl_ms"] > 0 and row["torch_ms"] > 0
    assert row["max_abs_dF"] < 1e-10 and row["abs_dE"] < 1e-8, row
    meta = result["meta"]
    assert len(meta["jaxtl_commit"].split("+")[0]) == 40  # a full git hash (+dirty for local changes)
    assert meta["command"].startswith("python benchmarks/speed.py --models small")
    assert {"jax", "flax", "torch", "mace"} <= set(meta["versions"]) and meta["date"]
    assert meta["jaxtl_commit"] in out.with_suffix(".md").read_text()


@needs("h2cu-mace", "h2cu-slabs")
def test_md_speed_benchmark_runs_the_same_trajectory_three_ways(tmp_path):
    """benchmarks/md_speed.py in its fast setting: mace-torch and jaxtl under ASE, and jaxtl's
    engine, integrate the same float64 NVE trajectory from the real H2/Cu model file."""
    out = tmp_path / "md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "md_speed.py"),
            "--steps",
            "6",
            "--check-every",
            "3",
            "--rounds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["code"]: r for r in result["rows"]}
    assert set(rows) == {"mace-torch + ASE", "jaxtl + ASE", "jaxtl MDEngine (auto skin)"}
    assert all(r["steps_per_s_median"] > 0 and len(r["ms_per_step"]) == 1 for r in rows.values())
    engine = rows["jaxtl MDEngine (auto skin)"]
    assert engine["max_position_diff_vs_calculator_A"] < 1e-9 and engine["max_position_diff_vs_torch_A"] < 1e-9
    assert rows["jaxtl + ASE"]["max_position_diff_vs_torch_A"] < 1e-9
    from jaxtl.md.skin import MAX_SKIN, MIN_SKIN

    assert (
        MIN_SKIN <= engine["skin_A"] <= MAX_SKIN and engine["compilations"] == 0
    )  # the warm-up run compiled the chunk
    assert engine["overflows"] == 0 and rows["jaxtl + ASE"]["cpu_ms_per_step_median"] > 0
    meta = result["meta"]
    assert meta["n_atoms"] == 56 and meta["n_fixed"] == 18 and meta["torch_threads"] == 1
    assert meta["load_before"] >= 0 and meta["load_after"] >= 0 and len(meta["jaxtl_commit"].split("+")[0]) == 40
