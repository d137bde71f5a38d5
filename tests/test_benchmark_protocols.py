"""benchmarks/_child.py: mace-torch in a process of its own computes what it does in ours."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxtl import _allocator

ROOT = Path(__file__).resolve().parents[1]
SI = ROOT.parent / "shared" / "data" / "mlearn" / "Si_train.extxyz"


@pytest.mark.skipif(not SI.exists(), reason="shared mlearn Si data not present")
def test_train_step_benchmark_with_torch_in_its_own_process(tmp_path):
    """Same weights and batch in the child: the two codes' float64 losses agree step for step,
    and the child ran without jaxtl's glibc tunables or heap settings."""
    out = tmp_path / "train_step"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_train_step.py"), "--hidden", "8x0e", "--dtypes", "float64",
         "--structures", "2", "--repeats", "2", "--warmup", "1", "--torch-process", "own", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert row["torch_process"] == "own"
    assert not set(row["torch_glibc_tunables"].split(":")) & set(_allocator.TUNABLES)
    assert row["torch_jaxtl_heap_settings"] is False  # nor jaxtl's mallopt settings
    assert len(row["torch_losses"]) == len(row["jaxtl_losses"]) == 3  # first step, then 2 timed
    assert row["loss_rel_diff_first"] < 1e-12 and row["loss_rel_diff_last"] < 1e-12, row
    assert row["torch_losses"][0] != row["torch_losses"][-1]  # the optimiser moved the weights
