"""Every `jaxtl` subcommand: --help, and a run on tiny data."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

SUBCOMMANDS = [
    "convert",
    "export",
    "models",
    "train",
    "finetune",
    "eval",
    "distill",
    "md",
    "demo",
    "learning-curve",
    "prepare",
    "datasets",
]
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared")
H2CU = os.path.join(SHARED, "models", "h2cu_mace.model")


def jaxtl(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "jaxtl.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_help_of_every_subcommand():
    top = jaxtl("--help").stdout
    for name in SUBCOMMANDS:
        assert name in top
    helps = {name: jaxtl(name, "--help").stdout for name in SUBCOMMANDS}
    assert "default" in helps["train"] and "eV/A" in helps["train"]
    assert "--freeze" in helps["finetune"] and "--dry-run" in helps["finetune"]
    assert "--dtype" in helps["convert"] and "--cache" in helps["convert"] and "--dtype" in helps["export"]
    assert "--strategy" in helps["finetune"] and "--lora-rank" in helps["finetune"]
    assert "--max-epochs" in helps["learning-curve"] and "--patience" in helps["learning-curve"]


def test_every_subcommand_module_is_registered_and_jax_waits():
    """Each module of jaxtl/cli (but the shared `common`) is one registered subcommand, and
    importing the CLI imports no JAX (`main` tunes the process first)."""
    import pkgutil

    import jaxtl.cli as cli

    modules = {m.name for m in pkgutil.iter_modules(cli.__path__)} - {"common", "__main__"}
    assert {c.__name__.rsplit(".", 1)[1] for c in cli.COMMANDS} == modules
    choices = next(a for a in cli.build_parser()._actions if a.dest == "command").choices
    assert set(choices) == set(SUBCOMMANDS)
    code = "import sys, jaxtl.cli; assert 'jax' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from jaxtl.demo import make_data

    return make_data(tmp_path_factory.mktemp("data"), n_foundation=14, n_target=12, n_test=6)


TINY = [
    "--hidden-irreps",
    "4x0e",
    "--max-ell",
    1,
    "--correlation",
    2,
    "--radial-mlp",
    8,
    "--batch-size",
    4,
    "--r-max",
    4.0,
]


@pytest.fixture(scope="module")
def base_model(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "run"
    jaxtl("train", "--train", tiny_data["foundation"], "--epochs", 1, "--out", out, *TINY)
    return out / "model"


def test_train_eval_and_resume(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--train",
        tiny_data["foundation"],
        "--test",
        tiny_data["target_test"],
        "--epochs",
        2,
        "--out",
        out,
        *TINY,
    ]
    proc = jaxtl(*args)
    assert "compilations" in proc.stdout
    assert (out / "model" / "config.json").exists() and (out / "metrics.jsonl").exists()
    # a finished run refuses to start again in the same folder without --resume
    again = jaxtl(*args, check=False)
    assert again.returncode != 0 and "resume" in again.stderr
    metrics = json.loads(jaxtl("eval", "--model", out / "model", "--data", tiny_data["target_test"], "--json").stdout)
    assert np.isfinite(metrics["all"]["forces_rmse"])


def test_finetune_dry_run_and_run(tiny_data, base_model, tmp_path):
    dry = jaxtl(
        "finetune",
        "--foundation",
        base_model,
        "--train",
        tiny_data["target_pool"],
        "--freeze",
        6,
        "--dry-run",
        "--out",
        tmp_path / "dry",
    ).stdout
    assert "frozen" in dry and "readouts_1" in dry
    assert not (tmp_path / "dry" / "model").exists()
    out = tmp_path / "ft"
    proc = jaxtl(
        "finetune",
        "--foundation",
        base_model,
        "--train",
        tiny_data["target_pool"],
        "--freeze",
        5,
        "--epochs",
        2,
        "--batch-size",
        4,
        "--out",
        out,
    )
    assert "frozen weights unchanged: True" in proc.stdout
    assert (out / "model" / "config.json").exists()


def test_finetune_rejects_unknown_element(tmp_path, base_model):
    import ase.io
    from ase import Atoms

    bad = tmp_path / "bad.xyz"
    atoms = Atoms("Fe2", positions=[[0, 0, 0], [2.2, 0, 0]], cell=np.eye(3) * 6, pbc=True)
    atoms.info["REF_energy"] = -1.0
    atoms.arrays["REF_forces"] = np.zeros((2, 3))
    ase.io.write(bad, [atoms], format="extxyz")
    proc = jaxtl(
        "finetune", "--foundation", base_model, "--train", bad, "--freeze", 6, "--out", tmp_path / "ft", check=False
    )
    assert proc.returncode != 0
    assert "Fe" in proc.stderr and "bad.xyz" in proc.stderr


@pytest.mark.skipif(not os.path.exists(H2CU), reason="../shared/models is absent")
def test_convert(tmp_path):
    proc = jaxtl("convert", H2CU, tmp_path / "h2cu")
    assert "parity float64" in proc.stdout
    bad = tmp_path / "x.model"
    bad.write_text("nope")
    proc = jaxtl("convert", bad, tmp_path / "x", check=False)
    assert proc.returncode == 1 and "x.model" in proc.stderr


def test_demo_fast(tmp_path):
    proc = jaxtl("demo", "--fast", "--out", tmp_path / "demo")
    assert "freeze 6" in proc.stdout and "scratch" in proc.stdout
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    rows = results["rows"]
    assert {r["model"] for r in rows} == {"scratch", "freeze 5", "freeze 6"}
    assert all(np.isfinite(r["forces_rmse"]) for r in rows)
    student = results["distillation"]
    assert "faster than its teacher" in proc.stdout
    assert student["n_labelled"] > 0 and np.isfinite(student["forces_rmse"]) and student["speedup"] > 0
    assert (tmp_path / "demo" / "student" / "student" / "model" / "config.json").exists()
