"""Label functions: --freeze N (both countings), layers, groups, patterns, soft freezing."""

import jax
import numpy as np
import optax
import pytest
from conftest import H2CU, tiny_model

from jaxtl.finetune import (
    FROZEN,
    TRAINABLE,
    describe,
    freeze_labels,
    group_labels,
    label_transforms,
    layer_labels,
    lr_factor_transforms,
    paper_children,
    pattern_labels,
    soft,
    soft_labels,
)
from jaxtl.finetune.freeze import map_paths
from jaxtl.train import OptimizerConfig, make_optimizer

# h2cu_mace.model, checked against torch's named_parameters: embedding 32, interactions 30080,
# products 832, readouts 288.
H2CU_FROZEN = {0: 0, 1: 32, 2: 32, 3: 32, 4: 32, 5: 30112, 6: 30944, 7: 31232, 8: 31232, -1: 0, -6: 0}


def frozen_paths(params, labels):
    return {p for p, _, _, label in describe(params, labels).leaves if label == FROZEN}


@pytest.mark.parametrize("n", sorted(H2CU_FROZEN))
def test_mace_freeze_counts_h2cu(h2cu, n):
    _, variables = h2cu
    report = describe(variables["params"], freeze_labels(variables["params"], n))
    assert report.n_params == 31232
    assert report.n_frozen == H2CU_FROZEN[n]


def test_paper_children_match_torch(h2cu):
    torch = pytest.importorskip("torch")

    config, _ = h2cu
    model = torch.load(H2CU, weights_only=False, map_location="cpu")
    assert paper_children(config) == [name for name, _ in model.named_children()]


def test_paper_counting_without_zbl_equals_mace_from_5(h2cu):
    config, variables = h2cu
    params = variables["params"]
    for n in (5, 6, 7):
        assert freeze_labels(params, n, "paper", config) == freeze_labels(params, n)
    # radial_embedding .. atomic_energies_fn hold no parameters: 1-4 freeze the embedding only.
    for n in (1, 2, 3, 4):
        assert freeze_labels(params, n, "paper", config) == freeze_labels(params, 1)
    # Negative: the last |N| children (scale_shift, readouts, products, interactions, ...).
    assert frozen_paths(params, freeze_labels(params, -1, "paper", config)) == set()
    groups = lambda labels: {p.split("/")[0].rstrip("0123456789") for p in frozen_paths(params, labels)}
    assert groups(freeze_labels(params, -2, "paper", config)) == {"readouts_"}
    assert groups(freeze_labels(params, -3, "paper", config)) == {"readouts_", "products_"}
    assert groups(freeze_labels(params, -8, "paper", config)) == {
        "readouts_",
        "products_",
        "interactions_",
        "node_embedding",
    }


def test_paper_counting_with_zbl_is_shifted_by_one():
    config, params = tiny_model(pair_repulsion=True)
    assert "pair_repulsion_fn" in paper_children(config)
    for n in (5, 6, 7):
        assert freeze_labels(params, n + 1, "paper", config) == freeze_labels(params, n)
    assert freeze_labels(params, 5, "paper", config) == freeze_labels(params, 1)  # only the embedding
    assert freeze_labels(params, 6, "paper", config) != freeze_labels(params, 6)
    # mace counting is by name, so ZBL does not change it.
    zbl_free = tiny_model(pair_repulsion=False)[1]
    for n in range(-2, 9):
        assert freeze_labels(params, n) == freeze_labels(zbl_free, n)
    with pytest.raises(ValueError, match="MACEConfig"):
        freeze_labels(params, 5, "paper")


def test_layer_group_and_pattern_labels(h2cu):
    _, variables = h2cu
    params = variables["params"]
    first = frozen_paths(params, layer_labels(params, [0], groups=("interactions",)))
    assert first and all(p.startswith("interactions_0/") for p in first)
    only_1 = layer_labels(params, [1], action="train", groups=("interactions",))
    trains = {p for p, _, _, label in describe(params, only_1).leaves if label == TRAINABLE}
    assert trains and all(p.startswith("interactions_1/") for p in trains)
    with pytest.raises(ValueError, match="no parameter"):
        layer_labels(params, [5])

    assert group_labels(params, freeze=["embedding", "interactions", "products"]) == freeze_labels(params, 6)
    assert group_labels(params, train=["readouts"]) == freeze_labels(params, 6)
    with pytest.raises(ValueError, match="group"):
        group_labels(params, freeze=["radial"])

    glob = pattern_labels(params, freeze=["interactions_*/conv_tp_weights"])
    regex = pattern_labels(params, freeze=[r"^interactions_\d+/conv_tp_weights/"], syntax="regex")
    assert glob == regex
    assert frozen_paths(params, glob) == {
        f"interactions_{t}/conv_tp_weights/layer_{k}" for t in (0, 1) for k in range(4)
    }
    # train-only patterns freeze everything else; train wins over freeze.
    assert pattern_labels(params, train=["readouts_*"]) == freeze_labels(params, 6)
    both = pattern_labels(params, freeze=["*"], train=["readouts_1"])
    assert {p for p, _, _, label in describe(params, both).leaves if label == TRAINABLE} == {
        "readouts_1/linear_1/0e",
        "readouts_1/linear_2/0e",
    }
    with pytest.raises(ValueError, match="matches no parameter"):
        pattern_labels(params, freeze=["interaction_1/*"])


def test_soft_labels_and_scaling(h2cu):
    _, variables = h2cu
    params = variables["params"]
    labels = soft_labels(
        params, {"interactions_lr_factor": 0.1, "embedding_lr_factor": 0.0}, base=freeze_labels(params, 0)
    )
    flat = dict(zip([p for p, *_ in describe(params, labels).leaves], jax.tree.leaves(labels)))
    assert flat["node_embedding/embeddings"] == FROZEN
    assert flat["interactions_1/linear/0e"] == soft(0.1)
    assert flat["products_0/linear/0e"] == TRAINABLE
    # Frozen stays frozen under any factor.
    assert soft_labels(params, {"readouts_lr_factor": 2.0}, base=freeze_labels(params, 7)) == freeze_labels(params, 7)

    grads = jax.tree.map(lambda x: np.ones_like(x), params)
    opt = optax.multi_transform(label_transforms(labels, optax.sgd(0.5)), labels)
    updates, _ = opt.update(grads, opt.init(params), params)
    for u, label in zip(jax.tree.leaves(updates), jax.tree.leaves(labels)):
        expected = {FROZEN: 0.0, TRAINABLE: -0.5, soft(0.1): -0.05}[label]
        np.testing.assert_allclose(u, expected, rtol=1e-15, atol=0)

    # The engine's optimiser (Adam + clipping): soft leaves move by exactly f times.
    cfg = OptimizerConfig(weight_decay=0.0)
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda x: rng.normal(size=x.shape), params)
    first_step = lambda opt: jax.jit(lambda g, p: opt.update(g, opt.init(p), p, learning_rate=0.01)[0])
    part = first_step(make_optimizer(cfg, labels, lr_factor_transforms(labels)))(grads, params)
    # Clipping sees a smaller norm without the frozen embedding: compare with the same frozen set.
    full = first_step(make_optimizer(cfg, soft_labels(params, {"embedding_lr_factor": 0.0})))(grads, params)
    for a, b, label in zip(jax.tree.leaves(part), jax.tree.leaves(full), jax.tree.leaves(labels)):
        np.testing.assert_allclose(a, b * (0.1 if label == soft(0.1) else 1.0), rtol=1e-12, atol=1e-300)


def test_state_memory_saved(h2cu):
    _, variables = h2cu
    params = variables["params"]
    labels = freeze_labels(params, 6)
    nominal = describe(params, labels)
    assert nominal.state_bytes_saved == 2 * 30944 * 8  # Adam mu and nu, float64
    cfg = OptimizerConfig()  # torch-style AMSGrad: mu, nu, nu_max
    measured = describe(params, labels, optimizer=lambda l: make_optimizer(cfg, l))
    assert measured.state_bytes_saved == 3 * 30944 * 8
    assert measured.state_bytes_full - measured.state_bytes_saved < 3 * 288 * 8 + 64
    text = str(measured)
    assert "trainable 288 of 31232" in text and "readouts_1/linear_2/0e" in text


def test_labels_have_the_params_structure():
    _, params = tiny_model()
    for labels in (
        freeze_labels(params, 5),
        pattern_labels(params, freeze=["products_*"]),
        soft_labels(params, {"readouts": 0.5}),
    ):
        assert jax.tree.structure(labels) == jax.tree.structure(map_paths(lambda p: "", params))
