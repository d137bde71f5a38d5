"""Losses: hand-computed values, parity with mace-torch, padding and batching invariance."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import train_toy as T

from jaxtl.graph.labels import Batch
from jaxtl.train.loss import LOSSES, LossConfig, add_terms, combine, compute_loss, huber, loss_terms


def _two_graph_batch():
    """2 real graphs (2 and 1 atoms) + a padding graph owning 2 padding nodes."""
    rng = np.random.default_rng(3)
    s = [T.random_structure(rng, 2), T.random_structure(rng, 1)]
    b = T.make_batch(s, n_nodes=5, n_edges=4, n_graphs=3)
    labels = b.labels._replace(
        energy=np.array([-3.0, -1.0, 0.0]),
        forces=rng.normal(size=(5, 3)) * np.array([1, 1, 1, 0, 0])[:, None],
        stress=rng.normal(size=(3, 3, 3)) * np.array([1, 1, 0])[:, None, None],
        virials=rng.normal(size=(3, 3, 3)) * np.array([1, 1, 0])[:, None, None],
        weight=np.array([2.0, 0.5, 0.0]),
        energy_weight=np.array([1.0, 1.0, 0.0]),
        forces_weight=np.array([1.0, 0.0, 0.0]),
        stress_weight=np.array([1.0, 1.0, 0.0]),
        virials_weight=np.array([0.0, 1.0, 0.0]),
    )
    pred = {
        "energy": np.array([-2.0, -1.5, 7.0]),
        "forces": rng.normal(size=(5, 3)),
        "stress": rng.normal(size=(3, 3, 3)),
        "virials": rng.normal(size=(3, 3, 3)),
    }
    pred["forces"][3:] = 1e3  # garbage on padding must not matter
    return pred, Batch(b.graph, labels)


def test_weighted_stress_virials_by_hand():
    pred, b = _two_graph_batch()
    lab = b.labels
    n = np.array([2.0, 1.0])
    e = lab.weight[:2] * lab.energy_weight[:2] * ((pred["energy"][:2] - lab.energy[:2]) / n) ** 2
    w_node = np.array([2.0, 2.0, 0.0])  # weight * forces_weight per real atom
    f = (w_node[:, None] * (pred["forces"][:3] - lab.forces[:3]) ** 2).sum() / 9
    s = (
        sum(lab.weight[g] * lab.stress_weight[g] * ((pred["stress"][g] - lab.stress[g]) ** 2).sum() for g in range(2))
        / 18
    )
    v = (
        sum(
            lab.weight[g] * lab.virials_weight[g] * (((pred["virials"][g] - lab.virials[g]) / n[g]) ** 2).sum()
            for g in range(2)
        )
        / 18
    )
    cfg = LossConfig(energy_weight=3.0, forces_weight=10.0, stress_weight=5.0, virials_weight=7.0)
    got = {
        k: float(compute_loss(pred, lab, b.graph, LossConfig(**{**cfg.__dict__, "loss": k})))
        for k in ("weighted", "forces_only", "stress", "virials")
    }
    np.testing.assert_allclose(got["weighted"], 3 * e.mean() + 10 * f, rtol=1e-12)
    np.testing.assert_allclose(got["forces_only"], 10 * f, rtol=1e-12)
    np.testing.assert_allclose(got["stress"], 3 * e.mean() + 10 * f + 5 * s, rtol=1e-12)
    np.testing.assert_allclose(got["virials"], 3 * e.mean() + 10 * f + 7 * v, rtol=1e-12)


def test_huber_and_conditional_bands_by_hand():
    assert float(huber(jnp.array(0.005), 0.01)) == pytest.approx(0.5 * 0.005**2)
    assert float(huber(jnp.array(-0.03), 0.01)) == pytest.approx(0.01 * (0.03 - 0.005))
    # One graph of 4 atoms, reference forces in each band; error 1 eV/A on x.
    rng = np.random.default_rng(0)
    b = T.make_batch([T.random_structure(rng, 4)], n_nodes=5, n_edges=16, n_graphs=2)
    ref = np.zeros((5, 3))
    ref[:4, 0] = [50.0, 150.0, 250.0, 350.0]
    ones = np.array([1.0, 0.0])
    lab = b.labels._replace(forces=ref, weight=ones, energy_weight=ones, forces_weight=ones, stress_weight=ones)
    pred = {"energy": np.zeros(2), "forces": ref + np.array([1.0, 0, 0]), "stress": np.zeros((2, 3, 3))}
    delta = 0.01
    expected_f = sum(d * (1.0 - 0.5 * d) for d in delta * np.array([1.0, 0.7, 0.4, 0.1])) / 12
    terms = loss_terms(pred, lab, b.graph, "universal", delta)
    np.testing.assert_allclose(terms["forces"][0] / terms["forces"][1], expected_f, rtol=1e-12)
    assert float(terms["energy"][0]) == 0 and float(terms["stress"][0]) == 0


def test_l1l2_by_hand():
    pred, b = _two_graph_batch()
    lab = b.labels
    n = np.array([2.0, 1.0])
    e = (lab.weight[:2] * lab.energy_weight[:2] * np.abs(pred["energy"][:2] - lab.energy[:2]) / n).mean()
    # graph 1 has forces weight 0 (no forces label): its atom adds 0 but counts in the mean
    has_f = np.array([1.0, 1.0, 0.0])
    f = (has_f * np.linalg.norm(pred["forces"][:3] - lab.forces[:3], axis=1)).mean()
    got = compute_loss(pred, lab, b.graph, LossConfig(loss="l1l2", energy_weight=2.0, forces_weight=3.0))
    np.testing.assert_allclose(float(got), 2 * e + 3 * f, rtol=1e-12)


@pytest.mark.parametrize("kind", ["weighted", "forces_only", "stress", "virials", "huber", "universal", "l1l2"])
def test_parity_with_mace_torch(kind):
    torch = pytest.importorskip("torch")
    mace_loss = pytest.importorskip("mace.modules.loss")
    pred, b = _two_graph_batch()
    lab = b.labels
    # Universal bands are exercised by large forces on one atom.
    lab = lab._replace(forces=lab.forces * np.array([150.0, 1.0, 320.0, 0, 0])[:, None])
    lab = lab._replace(forces_weight=np.array([1.0, 1.0, 0.0]))
    if kind in ("huber", "l1l2"):
        # mace-torch's huber and l1l2 ignore label weights (they would fit a missing label);
        # jaxtl masks labels of weight 0, so the two agree when every label is present.
        present = np.array([1.0, 1.0, 0.0])
        lab = lab._replace(energy_weight=present, forces_weight=present, stress_weight=present)
    cls = {
        "weighted": "WeightedEnergyForcesLoss",
        "forces_only": "WeightedForcesLoss",
        "stress": "WeightedEnergyForcesStressLoss",
        "virials": "WeightedEnergyForcesVirialsLoss",
        "huber": "WeightedHuberEnergyForcesStressLoss",
        "universal": "UniversalLoss",
        "l1l2": "WeightedEnergyForcesL1L2Loss",
    }[kind]
    weights = dict(energy_weight=3.0, forces_weight=10.0, stress_weight=5.0, virials_weight=7.0)
    kwargs = {
        k: v
        for k, v in weights.items()
        if k.split("_")[0]
        in {
            "weighted": "energy forces",
            "forces_only": "forces",
            "stress": "energy forces stress",
            "virials": "energy forces virials",
            "huber": "energy forces stress",
            "universal": "energy forces stress",
            "l1l2": "energy forces",
        }[kind].split()
    }
    if kind in ("huber", "universal"):
        kwargs["huber_delta"] = 0.3
    torch_loss = getattr(mace_loss, cls)(**kwargs)

    class Ref(dict):
        __getattr__ = dict.__getitem__

    t = lambda x: torch.tensor(np.asarray(x, np.float64))
    ref = Ref(
        energy=t(lab.energy[:2]),
        forces=t(lab.forces[:3]),
        stress=t(lab.stress[:2]),
        virials=t(lab.virials[:2]),
        weight=t(lab.weight[:2]),
        energy_weight=t(lab.energy_weight[:2]),
        forces_weight=t(lab.forces_weight[:2]),
        stress_weight=t(lab.stress_weight[:2]),
        virials_weight=t(lab.virials_weight[:2]),
        ptr=torch.tensor([0, 2, 3]),
    )
    tp = {
        "energy": t(pred["energy"][:2]),
        "forces": t(pred["forces"][:3]),
        "stress": t(pred["stress"][:2]),
        "virials": t(pred["virials"][:2]),
    }
    expected = float(torch_loss(ref, tp))
    got = float(compute_loss(pred, lab, b.graph, LossConfig(loss=kind, huber_delta=0.3, **weights)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("kind", LOSSES)
def test_missing_labels_add_nothing(kind):
    """A label of weight 0 (missing in the file) may hold anything: the loss is unchanged."""
    pred, b = _two_graph_batch()
    lab = b.labels._replace(
        energy_weight=np.array([1.0, 0.0, 0.0]),
        forces_weight=np.array([1.0, 0.0, 0.0]),
        stress_weight=np.array([0.0, 1.0, 0.0]),
        virials_weight=np.array([0.0, 1.0, 0.0]),
    )
    garbage = lab._replace(
        energy=lab.energy + np.array([0.0, 1e3, 0.0]),
        forces=lab.forces + np.array([0, 0, 1, 0, 0])[:, None] * 1e3,  # atom 2 is graph 1's
        stress=lab.stress + np.array([1, 0, 0])[:, None, None] * 1e3,
        virials=lab.virials + np.array([1, 0, 0])[:, None, None] * 1e3,
    )
    cfg = LossConfig(loss=kind)
    base = float(compute_loss(pred, lab, b.graph, cfg))
    assert float(compute_loss(pred, garbage, b.graph, cfg)) == pytest.approx(base, rel=1e-12, abs=1e-12)
    # the labels of weight 1 do count: garbage there changes the loss
    seen = lab._replace(forces=lab.forces + np.array([1, 0, 0, 0, 0])[:, None] * 1e3)
    assert float(compute_loss(pred, seen, b.graph, cfg)) != pytest.approx(base, rel=1e-6)


@jax.jit
def _losses_grads_terms(variables, batch):
    """{kind: (loss, grad, terms)} for every loss kind (one compilation per shape)."""

    def f(params, kind):
        p = T.predict({"params": params, "constants": variables["constants"]}, batch.graph, True)
        terms = loss_terms(p, batch.labels, batch.graph, kind)
        return combine(terms, LossConfig().weights()), terms

    out = {}
    for kind in LOSSES:
        (value, terms), grad = jax.value_and_grad(f, has_aux=True)(variables["params"], kind)
        out[kind] = (value, grad, terms)
    return out


@pytest.fixture(scope="module")
def padded_data():
    rng = np.random.default_rng(5)
    structs = [T.random_structure(rng) for _ in range(4)]
    teacher = T.teacher()
    lab = lambda b: jax.tree.map(jnp.asarray, T.label_batch(b, teacher))
    return {
        "variables": T.init_variables(1),
        "small": lab(T.make_batch(structs)),
        "big": lab(T.make_batch(structs, n_nodes=30, n_edges=100, n_graphs=9)),
        "halves": [lab(T.make_batch(structs[:2])), lab(T.make_batch(structs[2:]))],
    }


def test_padding_and_batching_invariance(padded_data):
    v, small, big, halves = (padded_data[k] for k in ("variables", "small", "big", "halves"))
    r_small, r_big = _losses_grads_terms(v, small), _losses_grads_terms(v, big)
    r_halves = [_losses_grads_terms(v, h) for h in halves]
    weights = LossConfig().weights()
    for kind in LOSSES:
        l1, g1, t1 = r_small[kind]
        l2, g2, _ = r_big[kind]
        np.testing.assert_allclose(l1, l2, rtol=1e-12, err_msg=kind)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14, err_msg=kind), g1, g2)
        # Terms of two half batches add up to the terms of the whole batch.
        both = add_terms(r_halves[0][kind][2], r_halves[1][kind][2])
        np.testing.assert_allclose(combine(both, weights), combine(t1, weights), rtol=1e-12, err_msg=kind)
