"""Reading structure files: labels, key fallbacks and error messages."""

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from jaxtl.graph.io import (
    DataError,
    DataKeys,
    check_elements,
    read_configurations,
    split_isolated_atoms,
    to_matrix,
)

GOOD_FRAME = """2
Lattice="5.0 0.0 0.0 0.0 5.0 0.0 0.0 0.0 5.0" Properties=species:S:1:pos:R:3:REF_forces:R:3 REF_energy=-3.5 REF_stress="1 2 3 4 5 6" config_type=bulk pbc="T T T"
Si 0.0 0.0 0.0 0.1 0.2 0.3
Si 1.3 1.3 1.3 -0.1 -0.2 -0.3
"""


def write(tmp_path, text, name="data.extxyz"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_ref_keys_and_voigt_stress(tmp_path):
    path = write(tmp_path, GOOD_FRAME * 2)
    configs = read_configurations(path, require=("energy", "forces", "stress"))
    assert len(configs) == 2
    c = configs[1]
    assert c.index == 1 and c.source == str(path)
    assert c.energy == -3.5 and c.energy_weight == 1.0
    np.testing.assert_allclose(c.forces, [[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]])
    # Voigt order xx yy zz yz xz xy
    np.testing.assert_allclose(c.stress, [[1, 6, 5], [6, 2, 4], [5, 4, 3]])
    assert c.virials is None and c.virials_weight == 0.0
    assert c.config_type == "bulk" and c.head == "Default" and c.pbc == (True, True, True)


def test_matrix_forms():
    m = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(to_matrix(m), m)
    np.testing.assert_array_equal(to_matrix(m.reshape(-1)), m)
    with pytest.raises(ValueError):
        to_matrix(np.zeros(4))


def test_falls_back_to_calculator_results(tmp_path):
    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.info["config_weight"] = 2.0
    atoms.info["config_forces_weight"] = 10.0
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, forces=np.ones((2, 3)))
    path = tmp_path / "h2.extxyz"
    ase.io.write(path, [atoms, atoms])
    (c,) = read_configurations(path, index="1:")
    assert c.energy == -1.0 and c.weight == 2.0 and c.forces_weight == 10.0
    np.testing.assert_array_equal(c.forces, np.ones((2, 3)))
    assert c.stress is None and c.stress_weight == 0.0
    # custom keys and config_type weights
    atoms.calc = None
    atoms.info.update(my_E=-2.0, config_type="gas", my_head="mp")
    ase.io.write(path, atoms)
    (c,) = read_configurations(path, DataKeys(energy="my_E", head="my_head"), config_type_weights={"gas": 0.5})
    assert c.energy == -2.0 and c.forces is None and c.weight == 1.0 and c.head == "mp"


def test_real_dataset(dataset):
    configs = read_configurations(dataset("mlearn-Si-train"), require=("energy", "forces"))
    assert len(configs) > 100
    assert all(c.forces.shape == (c.n_atoms, 3) for c in configs)
    check_elements(configs, [14])


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "file is empty"),
        ("2\nProperties=species:S:1:pos:R:3\nSi 0 0 0\n", "frame 0: cannot be read"),
        (GOOD_FRAME + "3\nProperties=species:S:1:pos:R:3\nSi 0 0 0\nSi 1 1 x\n", "frame 1: cannot be read"),
        (GOOD_FRAME + GOOD_FRAME.replace("1.3 1.3 1.3", "nan 1.3 1.3"), r"frame 1: positions of atoms \[1\]"),
        (GOOD_FRAME.replace("REF_energy=-3.5", "REF_energy=nan") + GOOD_FRAME, "frame 0: label 'energy'"),
        (GOOD_FRAME * 2 + GOOD_FRAME.replace("0.1 0.2 0.3", "0.1 inf 0.3"), "frame 2: label 'forces'"),
        (GOOD_FRAME + GOOD_FRAME.replace("1.3 1.3 1.3", "0.05 0.0 0.0"), "frame 1: atoms 0 and 1 overlap"),
        (GOOD_FRAME.replace("0.0 0.0 5.0", "0.0 0.0 0.0"), "frame 0: .*degenerate"),
    ],
)
def test_errors_name_file_and_frame(tmp_path, text, message):
    path = write(tmp_path, text, "bad.extxyz")
    with pytest.raises(DataError, match=message) as info:
        read_configurations(path)
    assert str(path) in str(info.value)


def test_overlap_with_own_periodic_image(tmp_path):
    path = write(tmp_path, GOOD_FRAME.replace("5.0 0.0 0.0 0.0 5.0", "0.05 0.0 0.0 0.0 5.0"))
    with pytest.raises(DataError, match="atoms 0 and 0 overlap"):
        read_configurations(path)


def test_missing_required_label(tmp_path):
    path = write(tmp_path, GOOD_FRAME + GOOD_FRAME.replace(" REF_energy=-3.5", ""))
    assert read_configurations(path)[1].energy is None
    with pytest.raises(DataError, match=r"frame 1: required label 'energy' is missing \(no 'REF_energy'"):
        read_configurations(path, require=("energy",))


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_configurations(tmp_path / "nope.extxyz")


def test_check_elements_names_symbol_and_frame(tmp_path):
    path = write(tmp_path, GOOD_FRAME + GOOD_FRAME.replace("Si 1.3", "Fe 1.3"))
    configs = read_configurations(path)
    check_elements(configs, [14, 26])
    with pytest.raises(DataError, match=r"frame 1: element Fe \(Z=26\) is not one of the model's elements \[Si\]"):
        check_elements(configs, [14])


def test_isolated_atoms_give_e0s(tmp_path):
    iso = '1\nLattice="9 0 0 0 9 0 0 0 9" Properties=species:S:1:pos:R:3 REF_energy={e} config_type=IsolatedAtom pbc="F F F"\n{s} 0 0 0\n'
    text = iso.format(e=-0.5, s="Si") + GOOD_FRAME + iso.format(e=-1.25, s="O")
    configs = read_configurations(path := write(tmp_path, text))
    rest, e0s = split_isolated_atoms(configs)
    assert e0s == {14: -0.5, 8: -1.25}
    assert [c.index for c in rest] == [1]
    kept, _ = split_isolated_atoms(read_configurations(path), keep=True)
    assert len(kept) == 3


def test_structure_only():
    from jaxtl.graph.io import configuration_from_atoms

    atoms = ase.Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.calc = SinglePointCalculator(atoms, energy=np.nan, forces=np.ones((2, 3)))
    with pytest.raises(DataError, match="<memory>, frame 0: label 'energy'"):
        configuration_from_atoms(atoms)
    c = configuration_from_atoms(atoms, read_labels=False)
    assert c.energy is None and c.forces is None and c.energy_weight == 0.0


MACE_STYLE = (
    '1\nProperties=species:S:1:pos:R:3 REF_energy=-0.5 config_type=IsolatedAtom pbc="F F F"\nSi 0 0 0\n'
    + GOOD_FRAME
    + GOOD_FRAME.replace("Properties=species:S:1:pos:R:3:REF_forces:R:3", "Properties=species:S:1:pos:R:3")
    .replace("Si 0.0 0.0 0.0 0.1 0.2 0.3", "Si 0.0 0.0 0.0")
    .replace("Si 1.3 1.3 1.3 -0.1 -0.2 -0.3", "Si 1.3 1.3 1.3")
    .replace("config_type=bulk", "config_type=md config_weight=0.5 config_energy_weight=3.0 head=pbe")
)


def test_frames_with_some_labels_are_kept_with_zero_weight(tmp_path):
    """An IsolatedAtom frame with only an energy and an energy-only frame read as mace-torch
    reads them: the missing labels are None with weight 0, nothing is refused."""
    iso, full, energy_only = read_configurations(write(tmp_path, MACE_STYLE))
    assert iso.forces is None and iso.forces_weight == 0.0 and iso.energy == -0.5
    assert full.forces_weight == 1.0 and full.energy_weight == 1.0 and full.stress_weight == 1.0
    assert energy_only.forces is None and energy_only.forces_weight == 0.0
    # per-config weights under mace-torch's info keys, times the config_type weight
    assert energy_only.energy_weight == 3.0 and energy_only.head == "pbe"
    assert energy_only.weight == 0.5
    weighted = read_configurations(write(tmp_path, MACE_STYLE), config_type_weights={"md": 4.0, "bulk": 2.0})
    assert [c.weight for c in weighted] == [1.0, 2.0, 2.0]
    # mace's --head_key: the head is read from another info key
    (_, _, c) = read_configurations(
        write(tmp_path, MACE_STYLE.replace("head=pbe", "dataset=pbe")), DataKeys(head="dataset")
    )
    assert c.head == "pbe"


def test_config_type_weights_must_name_config_types_of_the_data(tmp_path):
    from jaxtl.graph.io import check_config_type_weights

    configs = read_configurations(write(tmp_path, MACE_STYLE))
    check_config_type_weights({"Default": 1.0, "bulk": 2.0, "IsolatedAtom": 1.0}, configs, "data.extxyz")
    with pytest.raises(
        DataError,
        match=r"config_type 'Bulk', which no structure of data.extxyz has "
        r"\(config types there: \['IsolatedAtom', 'bulk', 'md'\]\)",
    ):
        check_config_type_weights({"Bulk": 2.0}, configs, "data.extxyz")
    with pytest.raises(DataError, match="weight of 'bulk' is not a number"):
        check_config_type_weights({"bulk": "heavy"}, configs, "data.extxyz")


def test_ase_database_with_key_value_pairs(tmp_path):
    """An ASE .db: labels, config_type and weights from key-value pairs, forces from data."""
    import ase.db

    frames = ase.io.read(write(tmp_path, MACE_STYLE), index=":")
    path = tmp_path / "data.db"
    with ase.db.connect(path) as db:
        for atoms in frames:
            kv = {k: v for k, v in atoms.info.items() if isinstance(v, (int, float, str))}
            data = {"REF_forces": atoms.arrays["REF_forces"]} if "REF_forces" in atoms.arrays else {}
            db.write(
                ase.Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc), key_value_pairs=kv, data=data
            )
    from_db = read_configurations(path)
    from_xyz = read_configurations(tmp_path / "data.extxyz")
    assert len(from_db) == 3
    for a, b in zip(from_db, from_xyz):
        assert (a.energy, a.config_type, a.weight, a.energy_weight, a.forces_weight, a.head) == (
            b.energy,
            b.config_type,
            b.weight,
            b.energy_weight,
            b.forces_weight,
            b.head,
        )
        assert (a.forces is None) == (b.forces is None)
        if a.forces is not None:
            np.testing.assert_array_equal(a.forces, b.forces)
    assert [c.index for c in read_configurations(path, index="1:")] == [0, 1]
