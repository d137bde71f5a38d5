"""E0 refits: least squares, rank deficiency, estimated, given, unknown elements."""

import numpy as np
import pytest

from jaxtl.finetune import RankDeficientWarning, element_counts, fit_e0s
from jaxtl.graph import Configuration, DataError

ZS = (1, 6, 8)
TRUE = np.array([-13.6, -1029.5, -2041.3])


def config(numbers, energy, index=0, source="data.xyz"):
    n = len(numbers)
    return Configuration(
        atomic_numbers=np.array(numbers),
        positions=np.arange(3 * n, dtype=float).reshape(n, 3),
        cell=np.zeros((3, 3)),
        pbc=(False, False, False),
        energy=energy,
        energy_weight=1.0,
        source=source,
        index=index,
    )


def synthetic(n=30, seed=0, noise=1e-3):
    rng = np.random.default_rng(seed)
    configs = []
    for i in range(n):
        numbers = sum(([z] * int(rng.integers(1, 6)) for z in ZS), [])
        counts = element_counts([config(numbers, 0.0)], ZS)[0]
        configs.append(config(numbers, float(counts @ TRUE + noise * rng.normal()), i))
    return configs


def test_average_recovers_e0s():
    foundation = np.zeros((1, 3))
    fitted = fit_e0s(synthetic(), ZS, foundation, "average")
    assert fitted.shape == (1, 3)
    np.testing.assert_allclose(fitted[0], TRUE, atol=2e-3)


def test_rank_deficient_uses_minimum_norm_and_warns():
    aspirin = [1] * 8 + [6] * 9 + [8] * 4  # C9H8O4, one composition (MD of one molecule)
    configs = [config(aspirin, -17000.0 + 0.1 * i, i) for i in range(5)]
    with pytest.warns(RankDeficientWarning, match="minimum-norm"):
        fitted = fit_e0s(configs, ZS, np.zeros((1, 3)), "average")[0]
    counts = np.array([8.0, 9.0, 4.0])
    np.testing.assert_allclose(counts @ fitted, -17000.0 + 0.2, rtol=1e-12)  # the mean energy
    np.testing.assert_allclose(fitted, counts * (counts @ fitted) / (counts @ counts), rtol=1e-12)  # min norm


def test_estimated_adds_the_residual_fit():
    foundation = np.array([[-10.0, -1000.0, -2000.0]])
    configs = synthetic(noise=0.0)
    # A foundation whose interaction part is exact but whose reference is offset per element.
    offset = np.array([0.5, -3.0, 7.0])
    predict = lambda cs: element_counts(cs, ZS) @ (TRUE - offset)
    fitted = fit_e0s(configs, ZS, foundation, "estimated", foundation_energy=predict)
    np.testing.assert_allclose(fitted[0], foundation[0] + offset, atol=1e-8)
    with pytest.raises(ValueError, match="foundation"):
        fit_e0s(configs, ZS, foundation, "estimated")


def test_given_foundation_and_absent_elements(tmp_path):
    foundation = np.array([[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]])
    configs = synthetic()
    assert np.array_equal(fit_e0s(configs, ZS, foundation, "foundation"), foundation)
    given = fit_e0s(configs, ZS, foundation, {"H": -13.0, 6: -1030.0, "8": -2040.0}, head=1)
    np.testing.assert_array_equal(given, [[-1.0, -2.0, -3.0], [-13.0, -1030.0, -2040.0]])
    path = tmp_path / "e0s.json"
    path.write_text('{"1": -13.0, "6": -1030.0, "8": -2040.0}')
    np.testing.assert_array_equal(fit_e0s(configs, ZS, foundation, str(path))[0], [-13.0, -1030.0, -2040.0])
    # Hydrocarbons only: O keeps the foundation's E0.
    hc = [config([1, 1, 6], -1056.7, 0), config([1, 6, 6], -2072.6, 1), config([1, 1, 1, 1, 6], -1084.0, 2)]
    fitted = fit_e0s(hc, ZS, foundation, "average")
    assert fitted[0, 2] == -3.0 and fitted[1, 2] == -6.0


def test_unknown_element_is_named():
    configs = synthetic()[:3] + [config([1, 7, 1], -100.0, index=7, source="train.xyz")]
    with pytest.raises(DataError, match=r"train.xyz, frame 7: element N \(Z=7\)"):
        fit_e0s(configs, ZS, np.zeros((1, 3)), "average")
    with pytest.raises(DataError, match="does not know"):
        fit_e0s(synthetic(), ZS, np.zeros((1, 3)), {"H": 1.0, "N": 2.0})


def test_mace_forms_on_finetune_and_missing_elements():
    foundation = np.array([[-1.0, -2.0, -3.0]])
    configs = synthetic()
    literal = fit_e0s(configs, ZS, foundation, "{1: -13.0, 6: -1030.0, 8: -2040.0}")
    np.testing.assert_array_equal(literal[0], [-13.0, -1030.0, -2040.0])
    with pytest.raises(DataError, match=r"no E0 for O \(Z=8\) in the E0s from --E0s"):
        fit_e0s(configs, ZS, foundation, "{1: -13.0, 6: -1030.0}")
    with pytest.raises(ValueError, match="cannot be read"):
        fit_e0s(configs, ZS, foundation, "{1: -13.0, 6: }")
    # IsolatedAtom frames: "isolated", and the default when there are some
    iso = [config([z], e, index=i) for i, (z, e) in enumerate(zip(ZS, TRUE + 1.0))]
    hc = [config([1, 1, 6], -1056.7, 0), config([1, 6, 6], -2072.6, 1)]
    for method in ("isolated", None):
        fitted = fit_e0s(hc, ZS, foundation, method, isolated=iso)
        np.testing.assert_array_equal(fitted[0], TRUE + 1.0)
    with pytest.raises(DataError, match=r"no E0 for C \(Z=6\) in the E0s from the IsolatedAtom frames"):
        fit_e0s(hc, ZS, foundation, "isolated", isolated=iso[:1])
    np.testing.assert_allclose(fit_e0s(configs, ZS, foundation, None)[0], TRUE, atol=2e-3)  # no frames: average
