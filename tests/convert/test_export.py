"""The exporter: jaxtl model -> mace-torch `.model` file, checked against mace-torch.

(1) torch -> jaxtl -> torch reproduces the original file (real files and registry
models of many shapes) bit for bit in its weights and to round-off in energies and
forces; (2) a fine-tuned-looking jaxtl model (perturbed weights, refitted E0s and
scale) written out is what jaxtl predicts; (3) the file loads with plain torch.load
and runs in mace's own ASE calculator; (4) `jaxtl export` on a tiny jaxtl-native
model; (5) configs mace-torch cannot express give a clear error and leave no file.
"""

import numpy as np
import pytest

pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")

import torch  # noqa: E402
from mirror import mirror_path, needs, require  # noqa: E402

from jaxtl.convert.convert import compare_with_torch  # noqa: E402
from jaxtl.convert.export import ExportError, export_file, to_torch_module  # noqa: E402
from jaxtl.convert.torch_eval import evaluate_torch, load_torch_model  # noqa: E402
from jaxtl.convert.torch_reader import read_config  # noqa: E402
from jaxtl.convert.verify import compare, verification_structures  # noqa: E402
from jaxtl.convert.weights import read_variables  # noqa: E402
from jaxtl.model_io import load_model_files, save_model  # noqa: E402

REAL_FILES = ("spice-mace", "h2cu-mace")  # jaxtl.datasets names
needs_shared = needs(*REAL_FILES)
ROUND_OFF = 1e-10

# ScaleShift + 2 heads (Residual/Residual); plain MACE + ZBL + Soft + chebyshev (Interaction/
# Residual); the NonLinear block. The others build slowly (correlation 3 coupling tensors).
FAST_ROUND_TRIP = ("multihead", "plain_l2_chebyshev_soft", "nonlinear")
SLOW_ROUND_TRIP = (
    "l0_interaction_residual",
    "l1_residual_gaussian",
    "density_zbl_agnesi",
    "l3_corr1_three_layers",
    "corr4_small",
    "single_layer_no_cutoff",
    "nonlinear_edge_agnostic",
)


def _read(torch_model):
    config = read_config(torch_model)
    return config, read_variables(torch_model, config)


def _worst(errors: dict) -> float:
    return max(v for k, v in errors.items() if k.endswith("_rel") and not k.startswith("interaction"))


def _assert_same_model(original, exported, heads) -> dict:
    """Equal weights wherever both have them, and equal float64 predictions (every head)."""
    sd0, sd1 = original.state_dict(), exported.state_dict()
    common = set(sd0) & set(sd1)
    assert len(common) > 0.9 * len(sd0)
    for key in common:
        assert torch.equal(sd0[key], sd1[key].to(sd0[key].dtype)), key
    assert next(exported.parameters()).dtype == next(original.parameters()).dtype
    atoms = verification_structures([int(z) for z in original.atomic_numbers], float(original.r_max))
    for i, a in enumerate(atoms):  # every head on some structure, one batch
        a.info["head"] = heads[i % len(heads)]
    errors = compare(evaluate_torch(original, atoms), evaluate_torch(exported, atoms), atoms)
    assert _worst(errors) < ROUND_OFF, errors
    return errors


@needs_shared
@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_round_trip(name):
    original = load_torch_model(mirror_path(name))
    config, variables = _read(original)
    exported = to_torch_module(config, variables)  # the file's own dtype (float32)
    assert type(exported).__name__ == type(original).__name__
    _assert_same_model(original, exported, config.heads)


def _registry_round_trip(name):
    from convert.torch_models import REGISTRY

    original, _ = REGISTRY[name]()
    config, variables = _read(original)
    exported = to_torch_module(config, variables)
    assert type(exported).__name__ == type(original).__name__
    assert [type(b).__name__ for b in exported.interactions] == [type(b).__name__ for b in original.interactions]
    _assert_same_model(original, exported, config.heads)


@pytest.mark.parametrize("name", FAST_ROUND_TRIP)
def test_registry_round_trip(name):
    _registry_round_trip(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_ROUND_TRIP)
def test_registry_round_trip_all(name):
    _registry_round_trip(name)


def test_one_head_of_a_multihead_model():
    """A single head kept by jaxtl (select_head) is a one-head mace model equal to that head."""
    from convert.torch_models import REGISTRY

    from jaxtl.heads import select_head

    original, _ = REGISTRY["multihead"]()
    config, variables = _read(original)
    one_config, one_variables = select_head(config, variables, "pt_head")
    exported = to_torch_module(one_config, one_variables)
    assert exported.heads == ["pt_head"] and exported.atomic_energies_fn.atomic_energies.shape == (4,)
    atoms = verification_structures([1, 6, 8, 29], float(original.r_max))
    errors = compare(evaluate_torch(original, atoms, head="pt_head"), evaluate_torch(exported, atoms), atoms)
    assert _worst(errors) < ROUND_OFF, errors


# --------------------------------------------------------------------------------------
# a fine-tuned model goes back to mace-torch


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """h2cu_mace.model through jaxtl, weights perturbed and E0s/scale refitted, exported (float64)."""
    h2cu = require("h2cu-mace")
    import jax

    tmp = tmp_path_factory.mktemp("finetuned")
    original = load_torch_model(h2cu)
    config, variables = _read(original)
    rng = np.random.default_rng(3)
    params = jax.tree_util.tree_map(
        lambda w: w * (1 + 0.05 * rng.standard_normal(w.shape)).astype(w.dtype), variables["params"]
    )
    consts = dict(variables["constants"])
    consts["atomic_energies"] = consts["atomic_energies"] + np.array([[0.31, -0.17]], np.float32)
    consts["scale"] = consts["scale"] * np.float32(1.1)
    consts["shift"] = consts["shift"] + np.float32(0.02)
    tuned = {"params": params, "constants": consts}
    save_model(tmp / "model", config.replace(dtype="float64"), tuned)
    out = tmp / "tuned.model"
    report = export_file(tmp / "model", out, dtype="float64", log=lambda *a: None)
    return dict(original=original, config=config, dir=tmp / "model", out=out, report=report)


def test_finetuned_model_is_what_jaxtl_predicts(finetuned):
    assert _worst(finetuned["report"]["Default"]) < ROUND_OFF
    written = torch.load(finetuned["out"], weights_only=False, map_location="cpu")
    assert type(written).__name__ == "ScaleShiftMACE"
    assert next(written.parameters()).dtype == torch.float64
    config, variables, _ = load_model_files(finetuned["dir"])
    atoms = verification_structures(config.atomic_numbers, config.r_max, seed=7)
    errors, ref, _ = compare_with_torch(written, config, variables, atoms)
    assert _worst(errors) < ROUND_OFF, errors
    before = evaluate_torch(finetuned["original"], atoms)
    assert np.max(np.abs(ref["energy"] - before["energy"])) > 1e-2  # the fine-tune is in the file
    assert np.allclose(
        written.atomic_energies_fn.atomic_energies.numpy(), np.asarray(variables["constants"]["atomic_energies"])[0]
    )


def test_mace_ase_calculator_runs_the_file(finetuned):
    """mace's own ASE calculator on the written file gives the numbers verified above."""
    from ase import Atom
    from ase.build import fcc111
    from mace.calculators import MACECalculator

    slab = fcc111("Cu", (2, 2, 3), vacuum=6.0)
    slab += Atom("H", slab[-1].position + np.array([0.0, 0.0, 1.5]))
    slab.rattle(0.05, seed=1)
    calc = MACECalculator(model_paths=str(finetuned["out"]), device="cpu", default_dtype="float64")
    slab.calc = calc
    energy, forces = slab.get_potential_energy(), slab.get_forces()
    ref = evaluate_torch(load_torch_model(finetuned["out"]), [slab.copy()], compute_stress=False)
    assert abs(energy - ref["energy"][0]) < ROUND_OFF * abs(energy)
    assert np.max(np.abs(forces - ref["forces"])) < ROUND_OFF * np.max(np.abs(forces))
    assert np.isfinite(slab.get_stress()).all()


# --------------------------------------------------------------------------------------
# a jaxtl-native model (jaxtl's own coupling basis) through the CLI; errors


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A tiny freshly initialised jaxtl model (O, H) with non-trivial E0s, saved as a folder."""
    from jaxtl.model.config import MACEConfig
    from jaxtl.model.mace import init_variables

    config = MACEConfig(
        atomic_numbers=(1, 8),
        r_max=4.0,
        num_bessel=4,
        hidden_irreps="4x0e+4x1o",
        max_ell=2,
        correlation=(3, 2),
        radial_MLP=(8,),
        MLP_irreps="4x0e",
        avg_num_neighbors=(3.5, 4.5),
        dtype="float64",
    )
    variables = init_variables(config, seed=1)
    variables["constants"]["atomic_energies"] = np.array([[-13.6, -430.2]])
    variables["constants"]["scale"] = np.array([0.7])
    variables["constants"]["shift"] = np.array([-0.3])
    folder = tmp_path_factory.mktemp("native") / "model"
    save_model(folder, config, variables)
    return config, variables, folder


def test_cli_export(native, tmp_path, capsys):
    from jaxtl.cli import main

    _, _, folder = native
    out = tmp_path / "back.model"
    assert main(["export", str(folder), str(out), "--dtype", "float32"]) == 0
    assert "torch vs jaxtl" in capsys.readouterr().out
    written = torch.load(out, weights_only=False, map_location="cpu")
    assert next(written.parameters()).dtype == torch.float32
    assert [float(b.avg_num_neighbors) for b in written.interactions] == [3.5, 4.5]

    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "x.model")]) == 1
    assert "not a jaxtl model folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.model"]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(num_polynomial_cutoff=5.5), "num_polynomial_cutoff"),
        (dict(gate_cst=1.5), "gate_cst"),
    ],
)
def test_inexpressible_config_is_refused(native, tmp_path, change, message):
    config, variables, _ = native
    bad = config.replace(**change)
    with pytest.raises(ExportError, match=message):
        to_torch_module(bad, variables)
    save_model(tmp_path / "bad", bad, variables)
    with pytest.raises(ExportError, match="cannot be written as a mace-torch model"):
        export_file(tmp_path / "bad", tmp_path / "bad.model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_variables_without_a_place_are_refused(native):
    config, variables, _ = native
    extra = {
        "params": dict(variables["params"], lora_adapter={"A": np.zeros((4, 2))}),
        "constants": variables["constants"],
    }
    with pytest.raises(ExportError, match="lora_adapter"):
        to_torch_module(config, extra)


def test_failed_verification_leaves_nothing(native, tmp_path, monkeypatch):
    import jaxtl.convert.export as export

    _, _, folder = native
    monkeypatch.setattr(export, "TOLERANCE", {"float64": -1.0, "float32": -1.0})
    with pytest.raises(ExportError, match="nothing was written"):
        export.export_file(folder, tmp_path / "m.model", log=lambda *a: None)
    assert list(tmp_path.iterdir()) == []
