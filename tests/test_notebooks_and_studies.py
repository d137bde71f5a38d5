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
    check_strategies_study(tmp_path / "strategies_fast")  # 04_finetuning_strategies runs the study's --fast


def check_strategies_study(out):
    """benchmarks/strategies_aspirin.py --fast: every strategy at both sizes, with accuracy and forgetting."""
    results = json.loads((out / "results.json").read_text())
    runs = {(r["n_train"], r["strategy"]): r for r in results["runs"]}
    strategies = ("naive", "freeze5", "freeze6", "lora", "magnitude", "replay", "replay+lora")
    assert set(runs) == {(n, s) for n in (10, 20) for s in strategies}
    for r in runs.values():
        for key in ("energy_rmse", "forces_rmse"):
            assert r[key] >= 0 and r["3bpa_vs_foundation"][key] >= 0 and r["3bpa_vs_dft"][key] >= 0
        assert r["dimers"]["all"] >= 0 and r["optimiser_state_bytes"] > 0
    assert runs[(10, "lora")]["n_trainable"] < runs[(10, "naive")]["n_trainable"]
    assert runs[(10, "replay")]["n_replay"] > 0 and runs[(10, "naive")]["n_replay"] == 0
    assert "foundation (zero-shot)" in (out / "results.md").read_text()
    assert (out / "strategies.png").exists()


@needs_shared
def test_materials_study_fast_with_a_foundation_file(tmp_path):
    """The CO2/Ni script end to end: scratch plus --freeze 0/5/6 from a mace-torch file
    shaped like MACE-MP-0 small (89 elements; random weights stand in for the real file)."""
    import torch
    from convert.torch_models import REGISTRY

    foundation = tmp_path / "mp0_small.model"
    torch.save(REGISTRY["mp0_small"]()[0], foundation)
    out = tmp_path / "materials"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "finetune_materials.py"), "--fast",
                           "--datasets", "co2_ni100", "--foundation", str(foundation), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json

    rows = json.loads((out / "co2_ni100" / "results.json").read_text())
    assert [r["strategy"] for r in rows] == ["scratch", "f0", "f5", "f6"]
    assert all(r["forces_rmse"] > 0 and r["energy_rmse"] == r["energy_rmse"] for r in rows)
    assert rows[1]["n_trainable"] > rows[2]["n_trainable"] > rows[3]["n_trainable"] > 0
    assert (out / "co2_ni100" / "learning_curves.png").exists()
