"""The cuEquivariance backend (`MACE(config, backend="cueq")`) computes what the default one does.

On a CPU the polynomials run through cuEquivariance's pure-JAX reference ("naive"); on a GPU
the same tests run its fused kernels ("uniform_1d"): `benchmarks/gpu_speed.sh` runs the parity
and gradient tests there. Parity is against mace-torch on real model files, as for the default backend.
"""

import numpy as np
import pytest

pytest.importorskip("cuequivariance_jax", reason="cuequivariance-jax not installed")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

from helpers import model_and_graph, random_jaxtl_model  # noqa: E402
from mirror import require  # noqa: E402

from jaxtl.model import MACE, make_predict  # noqa: E402

TOL64 = 1e-9


def _torch_parity(torch_model, structures, dtype="float64"):
    from jaxtl.convert.convert import compare_with_torch, from_torch_module

    config, variables = from_torch_module(torch_model)
    errors, _, _ = compare_with_torch(torch_model, config, variables, structures, dtype, backend="cueq")
    return errors


@pytest.mark.parametrize("name", ["spice", "h2cu"])
def test_real_models_match_mace_torch(name):
    pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")
    model_file = require(f"{name}-mace")
    from structures import real_model_structures

    from jaxtl.convert.torch_reader import load_torch_model

    model = load_torch_model(model_file)
    errors = _torch_parity(model, real_model_structures(name))
    for key in ("energy_rel", "forces_rel", "stress_rel"):
        assert errors[key] < TOL64, errors


def test_foundation_shaped_model_matches_mace_torch():
    """89 elements, 128x0e+128x1o, correlation 3: the tables of the elements present only."""
    pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")
    from convert.torch_models import REGISTRY
    from structures import all_structures

    model, _ = REGISTRY["mp0_medium"]()
    structures = list(all_structures([29, 8, 1, 26], seed=2, r_max=6.0).values())[:2]
    errors = _torch_parity(model, structures)
    for key in ("energy_rel", "forces_rel", "stress_rel"):
        assert errors[key] < TOL64, errors


@pytest.mark.parametrize("layout", [True, False])
def test_training_gradient_matches_default_backend(monkeypatch, layout):
    """d/dparams of an energy + force loss (a second derivative through the kernels), with the
    batch's element list (tables of the listed elements) and without (tables of all)."""
    model, graph, n, _ = model_and_graph(monkeypatch, 10**6, 10**6, 16384, layout)

    def gradient(backend):
        predict = make_predict(MACE(model.config, backend))

        def loss(params):
            out = predict({"params": params, "constants": model.constants}, graph, True)
            return jnp.sum(out["energy"] ** 2) + jnp.sum((out["forces"][:n] - 0.3) ** 2) + jnp.sum(out["stress"] ** 2)

        return jax.jit(jax.value_and_grad(loss))(model.params)

    (ref_loss, ref), (loss, got) = gradient("xla"), gradient("cueq")
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    flat_ref, flat = jax.tree_util.tree_leaves(ref), jax.tree_util.tree_leaves(got)
    scale = max(float(np.abs(g).max()) for g in flat_ref)
    assert scale > 0
    for a, b in zip(flat, flat_ref):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11 * scale)


def test_edge_chunks_change_nothing(monkeypatch):
    """Large systems take the convolution in edge chunks (a scan): same energy, forces, stress."""
    from jaxtl.model import cueq

    model, graph, n, n_edges = model_and_graph(monkeypatch, 10**6, 10**6, 16384, True)

    def predict():
        return jax.jit(make_predict(MACE(model.config, "cueq")), static_argnums=2)(model.variables, graph, True)

    one = predict()
    monkeypatch.setattr(cueq, "EDGE_CHUNK", 7)  # uneven: a padded last chunk
    many = predict()
    assert n_edges > 7 * 10
    np.testing.assert_allclose(many["energy"], one["energy"], rtol=1e-12)
    for key in ("forces", "stress"):
        np.testing.assert_allclose(many[key], one[key], rtol=0, atol=1e-12 * np.abs(one[key]).max())


@pytest.mark.parametrize(
    "name", ["density_zbl_agnesi", "l3_corr1_three_layers", "corr4_small", "nonlinear_edge_agnostic"]
)
def test_block_variants_match_mace_torch(name):
    """Density-normalised, max_L 3, correlation 4 and non-linear interaction blocks."""
    pytest.importorskip("jaxtl.convert.torch_eval", reason="torch/mace-torch not installed")
    from convert.torch_models import REGISTRY
    from structures import all_structures

    from jaxtl.convert import torch_eval

    model, _ = REGISTRY[name]()
    zs = [int(z) for z in torch_eval.model_atomic_numbers(model)]
    structures = list(all_structures(zs, seed=1, r_max=torch_eval.model_r_max(model)).values())
    errors = _torch_parity(model, structures)
    for key in ("energy_rel", "forces_rel", "stress_rel"):
        assert errors[key] < TOL64, errors


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'triton'"):
        MACE(random_jaxtl_model().config, "triton")
