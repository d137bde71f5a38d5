"""Neighbour-list parity with mace-torch's get_neighborhood (the ground truth)."""

import numpy as np
import pytest

mace_neighborhood = pytest.importorskip("mace.data.neighborhood", reason="mace-torch is not installed")

from jaxtl.graph.neighbours import neighbour_list  # noqa: E402


def reference_edges(positions, cell, pbc, r_max):
    edge_index, _, unit_shifts, _ = mace_neighborhood.get_neighborhood(
        positions,
        r_max,
        pbc=tuple(bool(p) for p in pbc),
        cell=np.array(cell, dtype=float),  # it edits cell
    )
    return edge_index[0], edge_index[1], unit_shifts


def edge_set(senders, receivers, shifts):
    shifts = map(tuple, np.asarray(shifts).astype(int).tolist())
    return sorted(zip(np.asarray(senders).tolist(), np.asarray(receivers).tolist(), shifts))


def check_parity(positions, cell, pbc, r_max):
    ours = neighbour_list(positions, cell, pbc, r_max)
    ref = reference_edges(positions, cell, pbc, r_max)
    assert len(ours[0]) == len(ref[0])
    assert edge_set(*ours) == edge_set(*ref)
    senders, receivers, shifts = ours
    assert senders.dtype == receivers.dtype == shifts.dtype == np.int32
    # the graph convention: r_ij = x[receiver] - x[sender] + S @ cell, all shorter than r_max
    vectors = positions[receivers] - positions[senders] + shifts @ np.asarray(cell)
    assert np.all(np.linalg.norm(vectors, axis=1) < r_max)
    assert not np.any((senders == receivers) & np.all(shifts == 0, axis=1))
    return ours


RNG = np.random.default_rng(1234)
SKEWED = np.array([[2.1, 0.0, 0.0], [0.9, 1.9, 0.0], [-0.6, 0.5, 2.3]])


@pytest.mark.parametrize(
    "name, positions, cell, pbc, r_max",
    [
        ("bulk", RNG.random((16, 3)) * 6.0, 6.0 * np.eye(3), (True, True, True), 3.5),
        ("skewed cell much smaller than r_max", RNG.random((3, 3)) @ SKEWED, SKEWED, (True,) * 3, 5.0),
        ("single atom, periodic images only", np.zeros((1, 3)), SKEWED, (True,) * 3, 4.0),
        ("left-handed cell", RNG.random((5, 3)) * 3.0, np.diag([3.0, 3.0, -3.0]), (True,) * 3, 4.0),
        ("atoms outside the cell", RNG.random((6, 3)) * 3.0 + [-7.0, 11.0, 4.0], 3.0 * np.eye(3), (True,) * 3, 3.0),
        (
            "slab TTF, zero c",
            RNG.random((8, 3)) * [3, 3, 6],
            np.array([[3.0, 0, 0], [1.0, 2.8, 0], [0, 0, 0]]),
            (True, True, False),
            4.0,
        ),
        (
            "slab TTF, skewed c",
            RNG.random((8, 3)) * [3, 3, 6],
            np.array([[3.0, 0, 0], [1.0, 2.8, 0], [0.4, 0.7, 12.0]]),
            (True, True, False),
            4.0,
        ),
        (
            "wire TFF",
            RNG.random((5, 3)) * 3,
            np.array([[2.5, 0, 0], [0, 9.0, 0], [0, 0, 9.0]]),
            (True, False, False),
            5.0,
        ),
        ("FTF", RNG.random((5, 3)) * 3, np.array([[9.0, 0, 0], [0.5, 2.5, 0], [0, 0, 9.0]]), (False, True, False), 5.0),
        ("molecule, zero cell", RNG.random((12, 3)) * 5.0, np.zeros((3, 3)), (False,) * 3, 3.0),
        ("molecule, far from origin", RNG.random((12, 3)) * 5.0 - 100.0, 10.0 * np.eye(3), (False,) * 3, 3.0),
    ],
)
def test_parity_with_mace(name, positions, cell, pbc, r_max):
    check_parity(positions, cell, pbc, r_max)


def test_parity_on_real_frames(dataset):
    import ase.io

    frames = ase.io.read(dataset("alniti"), "::97")
    frames += ase.io.read(dataset("co2-ni100"), "::200")
    frames += ase.io.read(dataset("3bpa-300K"), "::250")
    for atoms in frames:
        check_parity(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)


def test_empty_and_errors():
    senders, receivers, shifts = neighbour_list(np.zeros((0, 3)), None, False, 5.0)
    assert senders.shape == (0,) and shifts.shape == (0, 3)
    with pytest.raises(ValueError, match="degenerate"):
        neighbour_list(np.zeros((2, 3)), np.zeros((3, 3)), True, 5.0)
    with pytest.raises(ValueError, match="NaN"):
        neighbour_list(np.full((2, 3), np.nan), np.eye(3), True, 5.0)


def test_order_is_deterministic():
    positions = RNG.random((20, 3)) * 5
    first = neighbour_list(positions, 5 * np.eye(3), True, 4.0)
    second = neighbour_list(positions, 5 * np.eye(3), True, 4.0)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell_side", [5.0, 0.9])  # 0.9 A: shifts up to 5 cells each way
def test_edges_are_sorted_by_sender_receiver_and_shift(cell_side):
    positions = RNG.random((12, 3)) * cell_side
    senders, receivers, shifts = neighbour_list(positions, cell_side * np.eye(3), True, 4.0)
    columns = (shifts[:, 2], shifts[:, 1], shifts[:, 0], receivers, senders)
    np.testing.assert_array_equal(np.lexsort(columns), np.arange(len(senders)))
    unsorted = neighbour_list(positions, cell_side * np.eye(3), True, 4.0, sort=False)
    assert sorted(zip(*(c.tolist() for c in unsorted))) == sorted(
        zip(*(c.tolist() for c in (senders, receivers, shifts)))
    )


def test_edge_keys_order_like_the_tuples_and_refuse_overflow():
    from jaxtl.graph.neighbours import edge_keys

    senders, receivers = np.array([1, 0, 0, 0, 1]), np.array([0, 1, 1, 1, 0])
    shifts = np.array([[0, 0, -1], [0, 0, 1], [0, -1, 2], [0, 0, -2], [-1, 0, 0]])
    keys = edge_keys(senders, receivers, shifts, n_nodes=2)
    expected = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], receivers, senders))
    np.testing.assert_array_equal(np.argsort(keys), expected)
    assert edge_keys(senders, receivers, shifts, n_nodes=2**22, bound=2**5) is None


def test_neighbour_list_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from jaxtl.graph.neighbours import neighbour_list\n"
        "neighbour_list(np.zeros((1, 3)), 3 * np.eye(3), True, 4.0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_neighbour_vectors_are_the_edges_of_neighbour_list_with_their_vectors():
    from jaxtl.graph.neighbours import neighbour_vectors, vesin_list

    rng = np.random.default_rng(3)
    cell = np.array([[3.0, 0.0, 0.0], [1.2, 3.1, 0.0], [0.3, 0.4, 2.9]])
    positions = rng.uniform(0, 1, (7, 3)) @ cell
    for pbc in ((True, True, True), (True, False, True), (False, False, False)):
        senders, receivers, shifts = neighbour_list(positions, cell, pbc, 3.5)
        expected = {
            (j, i, *np.round(positions[i] - positions[j] + s @ cell, 10))
            for j, i, s in zip(senders.tolist(), receivers.tolist(), shifts)
        }
        reuse = vesin_list(3.5)
        for _ in range(2):  # a reused vesin list gives the same edges again
            centres, neighbours, vectors = neighbour_vectors(positions, cell, pbc, 3.5, reuse=reuse)
            found = {(i, j, *np.round(v, 10)) for i, j, v in zip(centres.tolist(), neighbours.tolist(), vectors)}
            assert len(found) == len(centres) and found == expected
