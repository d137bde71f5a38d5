"""Every head of a converted multi-head model against mace-torch, to float64 round-off:
each head kept alone (`head=`, select_head), all heads in one model with a batch that mixes
them (graph.head), and the converter's own check covering every head."""

import numpy as np
import pytest

torch_eval = pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from convert.torch_models import REGISTRY  # noqa: E402

from jaxtl.api import build_loaded_model  # noqa: E402
from jaxtl.convert.convert import compare_with_torch, from_torch_module, verify  # noqa: E402
from jaxtl.convert.verify import compare, verification_structures  # noqa: E402
from jaxtl.graph.batching import batch_atoms  # noqa: E402

ROUND_OFF = 1e-10  # relative; float64 round-off is ~1e-15, a wrong head's weights give ~1e-1


def _worst(errors):
    return max(v for k, v in errors.items() if k.endswith("_rel") and not k.startswith("interaction"))


@pytest.fixture(scope="module")
def two_heads():
    model, _ = REGISTRY["multihead"]()
    config, variables = from_torch_module(model)
    assert len(config.heads) == 2
    atoms = verification_structures(config.atomic_numbers, config.r_max)
    return model, config, variables, atoms


def test_each_head_alone(two_heads):
    model, config, variables, atoms = two_heads
    energies = {}
    for head in config.heads:
        errors, ref, out = compare_with_torch(model, config, variables, [a.copy() for a in atoms], "float64", head)
        assert _worst(errors) < ROUND_OFF, (head, errors)
        energies[head] = np.asarray(ref["energy"])
    a, b = energies.values()
    assert np.abs(a - b).max() > 1e-3  # the heads differ, so comparing the wrong one would fail


def test_all_heads_in_one_mixed_batch(two_heads):
    """The full multi-head jaxtl model, each structure on its own head, as mace-torch evaluates them."""
    model, config, variables, atoms = two_heads
    structures = [a.copy() for a in atoms] + [a.copy() for a in atoms]
    for i, a in enumerate(structures):
        a.info["head"] = config.heads[(i + i // len(atoms)) % len(config.heads)]  # every structure on both heads
    ref = torch_eval.evaluate_torch(model, structures, dtype="float64", compute_stress=True)
    loaded = build_loaded_model(config, variables, dtype="float64")
    batch = batch_atoms(structures, config.r_max, np.float64, heads=config.heads)
    assert sorted(set(np.asarray(batch.graph.head)[: len(structures)].tolist())) == [0, 1]
    out = {k: np.asarray(v) for k, v in loaded.predict(batch.graph, compute_stress=True).items()}
    errors = compare(ref, out, structures)
    assert _worst(errors) < ROUND_OFF, errors


def test_converter_check_covers_every_head(two_heads):
    """A conversion whose second head is wrong is caught by the converter's own verification."""
    model, config, variables, _ = two_heads
    assert _worst(verify(model, config, variables, "float64")) < ROUND_OFF
    broken = jax.tree_util.tree_map(np.array, variables)
    broken["constants"]["scale"] = np.asarray(broken["constants"]["scale"]).copy()
    broken["constants"]["scale"][1] *= 1.5  # the second head's scale only
    assert _worst(verify(model, config, broken, "float64")) > 1e-3
