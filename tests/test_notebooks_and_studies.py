"""The notebooks run (the fine-tuning study script and the distillation chain in their fast
settings), so none can rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "models" / "spice_mace.model").exists(),
                                  reason="../shared (real data and models) is absent")


@needs_shared
def test_notebooks_execute(tmp_path):
    pytest.importorskip("nbclient")
    env = dict(os.environ, JAXTL_FAST="1", JAXTL_NB_OUT=str(tmp_path))
    proc = subprocess.run([sys.executable, str(ROOT / "notebooks" / "make_notebooks.py"), "--check"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "notebooks"))
    from make_notebooks import NOTEBOOKS

    assert proc.stdout.count("executed") == len(NOTEBOOKS)
    assert (tmp_path / "aspirin_fast" / "results.md").exists()
    chain = json.loads((tmp_path / "aspirin_chain" / "results" / "results.json").read_text())  # 03_distill_and_md
    assert chain["speed"]["speedup"] > 0 and chain["nve"]["error"] is None
    assert chain["ase_vs_jit_max_position_diff_A"] < 1e-8  # ASE's VelocityVerlet retraces the jit-compiled NVE
