"""mace-torch's --E0s for training from scratch: parsing every form, resolving, clear errors."""

import json

import numpy as np
import pytest

from jaxtl.graph import Configuration, DataError
from jaxtl.train.e0s import element_counts, parse_e0s, resolve_e0s

ZS = (1, 8)
TRUE = {1: -13.6, 8: -2042.0}


def config(numbers, energy=None, config_type="Default", index=0):
    n = len(numbers)
    return Configuration(
        atomic_numbers=np.array(numbers),
        positions=np.arange(3 * n, dtype=float).reshape(n, 3),
        cell=np.zeros((3, 3)),
        pbc=(False,) * 3,
        energy=energy,
        energy_weight=0.0 if energy is None else 1.0,
        config_type=config_type,
        source="train.xyz",
        index=index,
    )


def molecules(n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        numbers = [1] * int(rng.integers(1, 5)) + [8] * int(rng.integers(1, 4))
        counts = element_counts([config(numbers)], ZS)[0]
        out.append(config(numbers, float(counts @ np.array([TRUE[1], TRUE[8]]) + 0.01 * rng.normal()), index=i))
    return out


def isolated(z, energy):
    return config([z], energy, "IsolatedAtom")


def test_every_form_parses(tmp_path):
    assert parse_e0s("average") == "average" and parse_e0s("Isolated") == "isolated"
    assert parse_e0s("{1: -13.6, 8: -2042.0}") == TRUE  # mace's Python dict literal
    assert parse_e0s('{"1": -13.6, "8": -2042.0}') == TRUE  # JSON
    assert parse_e0s("{'H': -13.6, 'O': -2042.0}") == TRUE  # by symbol
    assert parse_e0s({1: -13.6, "O": -2042}) == TRUE  # a mapping, e.g. from a YAML config
    path = tmp_path / "e0s.json"
    path.write_text(json.dumps({"1": -13.6, "8": -2042.0}))
    assert parse_e0s(str(path)) == TRUE


@pytest.mark.parametrize(
    "text, message",
    [
        ("{1: -13.6, 8: }", "cannot be read: expected one of average"),
        ("avarage", "cannot be read"),
        ("__import__('os').system('true')", "cannot be read"),  # never evaluated
        ("{'Xx': 1.0}", "unknown element 'Xx'"),
        ("{1: 'low'}", "E0 of H is not a number"),
    ],
)
def test_bad_e0s_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_e0s(text)


def test_isolated_atoms_give_the_e0s_and_a_missing_one_is_named():
    data = molecules()
    e0, source = resolve_e0s(None, data, ZS, [isolated(1, -13.0), isolated(8, -2040.0)])
    assert source == "isolated" and e0.tolist() == [-13.0, -2040.0]
    with pytest.raises(DataError, match=r"no E0 for O \(Z=8\) in the E0s from the IsolatedAtom frames"):
        resolve_e0s("isolated", data, ZS, [isolated(1, -13.0)])
    with pytest.raises(DataError, match="holds no IsolatedAtom frames"):
        resolve_e0s("isolated", data, ZS)


def test_average_fits_and_isolated_frames_fix_their_elements():
    data = molecules()
    e0, source = resolve_e0s("average", data, ZS)
    np.testing.assert_allclose(e0, [TRUE[1], TRUE[8]], atol=0.05)
    # H fixed by its IsolatedAtom frame (as mace-torch: the frames win); O fitted to the rest
    e0, source = resolve_e0s("average", data, ZS, [isolated(1, -10.0)])
    assert e0[0] == -10.0 and "IsolatedAtom frames for H" in source
    counts = element_counts(data, ZS)
    residual = np.array([c.energy for c in data]) - counts[:, 0] * -10.0
    np.testing.assert_allclose(e0[1], np.linalg.lstsq(counts[:, 1:], residual, rcond=None)[0][0], rtol=1e-12)
    # energy-only labels are what the fit uses; frames without energy are skipped
    e0_more, _ = resolve_e0s("average", data + [config([1, 8])], ZS)
    np.testing.assert_allclose(e0_more, resolve_e0s("average", data, ZS)[0], rtol=1e-12)


def test_given_dict_must_cover_every_element():
    e0, source = resolve_e0s("{1: -13.6, 8: -2042.0}", molecules(), ZS)
    assert source == "given" and e0.tolist() == [-13.6, -2042.0]
    with pytest.raises(DataError, match=r"no E0 for O \(Z=8\) in the E0s from --E0s"):
        resolve_e0s("{1: -13.6}", molecules(), ZS)
    with pytest.raises(ValueError, match="needs a foundation model"):
        resolve_e0s("foundation", molecules(), ZS)
