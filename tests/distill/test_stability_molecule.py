"""The molecular stability study of benchmarks/student_stability_molecule.py: its criteria on
hand-made frames, and 50 fs of ethanol held by harmonic bonds (the reference) and a calculator that breaks
a bond, through the shared runner."""

import os
import sys

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import student_stability as stab  # noqa: E402
import student_stability_molecule as mol  # noqa: E402

FAST = stab.StabilityConfig(
    time_ps=0.05,
    dt_fs=0.5,
    temperature=300.0,
    save_every=10,
    seed=1,
    criteria=mol.MoleculeCriteria(equilibration_fs=10.0, mean_temperature_tolerance=10.0, max_temperature_factor=100.0),
)


def ethanol():
    atoms = molecule("CH3CH2OH")
    atoms.center(vacuum=5.0)
    atoms.pbc = False
    return atoms


def frame(start, positions, forces=None, step=20):
    a = start.copy()
    a.positions = positions
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)) if forces is None else forces)
    a.info.update(md_step=step, time_fs=float(step))
    return a


def test_bonds_and_observables_of_ethanol():
    pairs, labels = mol.bonds(ethanol())
    assert len(pairs) == 8 and sorted(labels) == sorted(["C-C", "C-O", "H-O"] + ["C-H"] * 5)
    assert list(mol.observables_of(ethanol())) == ["bond_C-C", "bond_C-H", "bond_C-O", "bond_H-O"]


def test_analyse_flags_each_criterion():
    start = ethanol()
    t, time_fs = np.full(2, 300.0), np.array([0.0, 20.0])
    good = mol.analyse([frame(start, start.positions)], start, t, time_fs, FAST, None)
    assert not good["exploded"], good["reasons"]
    assert good["max_bond_stretch"] == pytest.approx(1.0)
    assert len(good["samples"]["bond_C-H"]) == 5 and good["samples"]["bond_C-C"][0] == pytest.approx(1.51, abs=0.02)
    pairs, labels = mol.bonds(start)
    i, j = pairs[labels.index("H-O")]
    stretched = start.positions.copy()
    stretched[j] += 1.0 * (stretched[j] - stretched[i]) / np.linalg.norm(stretched[j] - stretched[i])
    reasons = mol.analyse([frame(start, stretched)], start, t, time_fs, FAST, None)["reasons"]
    assert any(r.startswith("max_bond_stretch") for r in reasons), reasons
    h = np.flatnonzero(start.numbers == 1)
    close = start.positions.copy()
    close[h[0]] = close[h[-1]] + [0.5, 0.0, 0.0]  # two H of different carbons/oxygen, 0.5 A apart
    reasons = mol.analyse([frame(start, close)], start, t, time_fs, FAST, None)["reasons"]
    assert any(r.startswith("min_nonbonded") for r in reasons), reasons
    big = np.zeros((len(start), 3))
    big[0] = [0, 0, 25.0]
    assert mol.analyse([frame(start, start.positions, big)], start, t, time_fs, FAST, None)["exploded"]
    hot = mol.analyse([frame(start, start.positions)], start, np.array([300.0, 2000.0]), time_fs, FAST, None)
    assert not hot["exploded"]  # FAST allows 100x the target
    strict = stab.StabilityConfig(temperature=300.0, criteria=mol.MoleculeCriteria(equilibration_fs=10.0))
    hot = mol.analyse([frame(start, start.positions)], start, np.array([300.0, 2000.0]), time_fs, strict, None)
    assert any("temperature" in r for r in hot["reasons"])


class Springs(Calculator):
    """Harmonic springs (20 eV/A^2) between the atoms of a start closer than 2.6 A (bonds and
    angles): a stable stand-in for a teacher."""

    implemented_properties = ("energy", "forces")

    def __init__(self, start):
        super().__init__()
        d = start.get_all_distances()
        self.pairs = np.argwhere(np.triu(d < 2.6, 1))
        self.length0 = d[self.pairs[:, 0], self.pairs[:, 1]]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        i, j = self.pairs.T
        d = self.atoms.positions[j] - self.atoms.positions[i]
        r = np.linalg.norm(d, axis=1)
        f = (-20.0 * (r - self.length0) / r)[:, None] * d  # on j
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, j, f)
        np.add.at(forces, i, -f)
        self.results = {"energy": float(10.0 * np.sum((r - self.length0) ** 2)), "free_energy": 0.0, "forces": forces}


class PullOHApart(Calculator):
    """A broken potential: pushes the hydroxyl H away from its O with 5 eV/A."""

    implemented_properties = ("energy", "forces")

    def __init__(self, o: int, h: int):
        super().__init__()
        self.o, self.h = o, h

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions[self.h] - self.atoms.positions[self.o]
        forces = np.zeros((len(self.atoms), 3))
        forces[self.h] = 5.0 * d / np.linalg.norm(d)
        self.results = {"energy": -5.0 * float(np.linalg.norm(d)), "free_energy": 0.0, "forces": forces}


def test_study_of_a_molecule_flags_a_breaking_bond(tmp_path):
    start = ethanol()
    pairs, labels = mol.bonds(start)
    o, h = sorted(pairs[labels.index("H-O")], key=lambda k: -start.numbers[k])
    models = {"teacher": ("springs", Springs(start)), "broken": ("other", PullOHApart(o, h))}
    system = mol.molecule_system(start, {"1"})
    rows = stab.study(models, [("0", start), ("1", start.copy())], FAST, tmp_path, log=lambda *a: None, system=system)
    by = {(r["model"], r["start"]): r for r in rows}
    teacher = by[("teacher", "0")]
    assert teacher["steps"] == FAST.steps and not teacher["exploded"], teacher["reasons"]
    assert np.isfinite(teacher["bond_C-H_js_teacher_halves"]) and teacher["bond_C-H_mean"] == pytest.approx(
        1.1, abs=0.1
    )
    assert by[("teacher", "1")]["held_out_start"] and not teacher["held_out_start"]
    broken = by[("broken", "0")]
    assert broken["exploded"] and any(r.startswith("max_bond_stretch") for r in broken["reasons"])
    assert 0.0 <= broken["bond_C-H_js"] <= 1.0 and np.isfinite(broken["bond_H-O_w1"])
