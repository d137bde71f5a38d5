"""The notebooks run, with the fine-tuning study script in its fast settings, so neither can rot."""

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
    assert proc.stdout.count("executed") == 2
    assert (tmp_path / "aspirin_fast" / "results.md").exists()
