"""The converter: real files end to end, clear errors, nothing half-written."""

import json
import os

import numpy as np
import pytest

pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")

from mirror import mirror_path, needs  # noqa: E402

from jaxtl.convert.convert import convert_file  # noqa: E402
from jaxtl.convert.torch_reader import ConversionError  # noqa: E402

H2CU = str(mirror_path("h2cu-mace"))
needs_shared = needs("h2cu-mace")


@needs_shared
def test_converter_script_writes_a_verified_model(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "h2cu"
    script = os.path.join(os.path.dirname(__file__), "..", "..", "converters", "convert_mace.py")
    proc = subprocess.run(
        [sys.executable, script, H2CU, str(out), "--dtype", "float64"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "parity float64" in proc.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["parity"]["float64"]["forces_rel"] < 1e-9
    assert json.loads((out / "config.json").read_text())["dtype"] == "float64"

    from ase.build import fcc100

    import jaxtl

    slab = fcc100("Cu", (2, 2, 3), vacuum=5.0)
    slab.calc = jaxtl.MACECalculator(out)
    assert np.isfinite(slab.get_potential_energy())


def test_not_a_model_file(tmp_path):
    text = tmp_path / "notes.model"
    text.write_text("this is not a model")
    with pytest.raises(ConversionError, match="notes.model"):
        convert_file(text, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pickle_of_something_else(tmp_path):
    path = tmp_path / "dict.model"
    import torch

    torch.save({"model": {"weight": torch.zeros(3)}}, path)
    with pytest.raises(ConversionError, match="dict"):
        convert_file(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unsupported_block_is_named():
    from convert.torch_models import REGISTRY

    from jaxtl.convert.convert import from_torch_module

    model, _ = REGISTRY["l0_interaction_residual"]()
    block = model.interactions[1]
    block.__class__ = type("RealAgnosticAttResidualInteractionBlock", (type(block),), {})
    with pytest.raises(ConversionError, match="RealAgnosticAttResidualInteractionBlock"):
        from_torch_module(model)


@needs_shared
def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    import jaxtl.convert.convert as conv

    monkeypatch.setattr(conv, "verify", lambda *a, **k: {"energy_rel": 1.0, "forces_rel": 1.0})
    with pytest.raises(ConversionError, match="nothing was written"):
        conv.convert_file(H2CU, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())
