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
needs_shared = pytest.mark.skipif(
    not (SHARED / "models" / "spice_mace.model").exists(), reason="../shared (real data and models) is absent"
)


def _mirror_holds(*names):
    from jaxtl import datasets

    try:
        for name in names:
            datasets.path(name, download=False)
    except datasets.DatasetError:
        return False
    return True


NOTEBOOK_DATA = ("h2cu-mace", "spice-mace", "rmd17-aspirin-train", "rmd17-aspirin-test", "3bpa-300K")


@pytest.mark.skipif(not _mirror_holds(*NOTEBOOK_DATA), reason="the data mirror ($JAXTL_DATA, ../shared) is absent")
def test_notebooks_execute(tmp_path):
    """The notebooks run from a copy of notebooks/ outside the repository, with only the data
    mirror ($JAXTL_DATA) given: a hidden dependence on the repository's layout fails here."""
    pytest.importorskip("nbclient")
    import shutil

    from jaxtl import datasets

    clone = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "notebooks", clone / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", "__pycache__"))
    out = tmp_path / "out"
    mirror = datasets.path("spice-mace", download=False).parents[1]  # the root that holds models/spice_mace.model
    env = dict(os.environ, JAXTL_FAST="1", JAXTL_NB_OUT=str(out), JAXTL_DATA=str(mirror))
    proc = subprocess.run(
        [sys.executable, str(clone / "notebooks" / "make_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=clone,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sys.path.insert(0, str(ROOT / "notebooks"))
    from make_notebooks import NOTEBOOKS

    assert proc.stdout.count("executed") == len(NOTEBOOKS)
    assert not (clone / "benchmarks").exists() and not (clone.parent / "shared").exists()
    grid = json.loads((out / "aspirin_learning_curve" / "results.json").read_text())  # 02_frozen_finetuning
    assert sorted(c["strategy"] for c in grid["cells"]) == ["f5", "scratch"]
    assert all(c["forces_rmse"] > 0 and c["energy_rmse"] == c["energy_rmse"] for c in grid["cells"])
    assert set(grid["verdict"]["forces_rmse"]) == {"f5"}  # scratch at the largest fraction finished: a verdict
    chain = json.loads((out / "aspirin_chain" / "results" / "results.json").read_text())  # 03_distill_and_md
    assert chain["speed"]["speedup"] > 0 and chain["nve"]["error"] is None
    assert chain["ase_vs_jit_max_position_diff_A"] < 1e-8  # ASE's VelocityVerlet retraces the jit-compiled NVE
    check_strategies_study(out / "strategies")  # 04_finetuning_strategies


def check_strategies_study(out):
    """04's own study: four strategies at one size, with accuracy, forgetting on 3BPA and cost."""
    runs = {r["strategy"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert set(runs) == {"naive", "freeze6", "lora", "replay"}
    for r in runs.values():
        assert r["energy_rmse"] >= 0 and r["forces_rmse"] > 0 and r["3bpa_vs_foundation"]["forces_rmse"] >= 0
        assert r["optimiser_state_bytes"] > 0
    assert runs["lora"]["n_trainable"] < runs["naive"]["n_trainable"]
    assert runs["freeze6"]["n_trainable"] < runs["naive"]["n_trainable"]
    assert runs["replay"]["n_replay"] > 0 and runs["naive"]["n_replay"] == 0
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
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "finetune_materials.py"),
            "--fast",
            "--datasets",
            "co2_ni100",
            "--foundation",
            str(foundation),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    import json

    rows = json.loads((out / "co2_ni100" / "results.json").read_text())
    assert [r["strategy"] for r in rows] == ["scratch", "f0", "f5", "f6"]
    assert all(r["forces_rmse"] > 0 and r["energy_rmse"] == r["energy_rmse"] for r in rows)
    assert rows[1]["n_trainable"] > rows[2]["n_trainable"] > rows[3]["n_trainable"] > 0
    assert (out / "co2_ni100" / "learning_curves.png").exists()


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("script", ["finetune_aspirin.py", "strategies_aspirin.py"])
def test_aspirin_study_scripts_fast(tmp_path, script):
    """The full studies' scripts in their tiny settings (the notebooks run their own smaller studies)."""
    out = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--fast", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    rows = results["runs"] if isinstance(results, dict) else results
    assert rows and all(r["forces_rmse"] > 0 for r in rows)
    assert (out / "results.md").exists()
