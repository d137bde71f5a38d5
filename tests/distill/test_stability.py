"""The stability study of benchmarks/student_stability.py in a fast setting: 50 steps of a
tiny random teacher on the compiled engine and calculators on the ASE path; the failure
criteria are computed, a broken calculator is flagged as exploded, finished runs are skipped."""

import os
import sys

import numpy as np
import pytest
from ase import Atoms
from ase.build import fcc100
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import student_stability as stab  # noqa: E402

FAST = stab.StabilityConfig(
    time_ps=0.05,
    save_every=5,
    seed=1,
    criteria=stab.Criteria(equilibration_fs=10.0, mean_temperature_tolerance=10.0, max_temperature_factor=100.0),
)


def h2_on_cu(bond: float = 0.74, height: float = 1.8) -> Atoms:
    """Two H atoms `bond` A apart, `height` A above a 3x3x2 Cu(100) slab, bottom layer fixed (20 atoms)."""
    atoms = fcc100("Cu", (3, 3, 2), a=3.6, vacuum=8.0, periodic=True)
    top = atoms.positions[:, 2].max()
    atoms += Atoms("H2", positions=[[0.5, 1.2, top + height], [0.5 + bond, 1.2, top + height]])
    atoms.set_constraint(FixAtoms(indices=np.flatnonzero(atoms.positions[:, 2] < atoms.positions[:, 2].min() + 0.1)))
    return atoms


class PullH2Together(Calculator):
    """A broken potential: pulls the two H atoms together with 30 eV/A (the explosion to catch)."""

    implemented_properties = ("energy", "forces")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        forces = np.zeros((len(self.atoms), 3))
        h = np.flatnonzero(self.atoms.numbers == 1)
        d = self.atoms.positions[h[1]] - self.atoms.positions[h[0]]
        forces[h[0]], forces[h[1]] = 30.0 * d / np.linalg.norm(d), -30.0 * d / np.linalg.norm(d)
        self.results = {"energy": 30.0 * float(np.linalg.norm(d)), "free_energy": 0.0, "forces": forces}


def test_study_flags_broken_calculator_and_compares_with_teacher(teacher, tmp_path):
    models = {"teacher": ("mace", teacher), "emt": ("emt", EMT()), "broken": ("other", PullH2Together())}
    # the random teacher is no physical potential: H atoms apart and above the slab keep it sane for 50 fs
    starts = [("0_cu100", h2_on_cu(bond=3.6, height=4.5))]
    rows = {r["model"]: r for r in stab.study(models, starts, FAST, tmp_path, log=lambda *a: None, round_ps=0.03)}
    for name in ("teacher", "emt"):  # compiled engine and ASE path, healthy: every criterion computed and passed
        r = rows[name]
        assert r["steps"] == FAST.steps and r["ps"] == pytest.approx(0.05)
        assert not r["exploded"], r["reasons"]
        assert 2.0 < r["min_hh"] < 3.9 and 1.0 < r["min_cuh"] < 6.0 and 2.0 < r["min_cucu"] < 3.0
        assert 0.0 < r["max_force"] < 20.0 and np.isfinite(r["mean_temperature_K"])
    for key in ("h_h_distance_js", "cu_cu_distance_js", "h_h_distance_overlap"):
        assert 0.0 <= rows["emt"][key] <= 1.0
    assert np.isfinite(rows["teacher"]["h_h_distance_js_teacher_halves"])
    broken = rows["broken"]
    assert broken["exploded"]
    assert broken["max_force"] >= 30.0 - 1e-9
    assert any(reason.startswith("max_force") for reason in broken["reasons"])
    # finished runs are skipped: a second study runs no steps and gives the same verdicts
    again = {r["model"]: r for r in stab.study(models, starts, FAST, tmp_path, log=lambda *a: None)}
    assert again["teacher"]["wall_s"] == pytest.approx(rows["teacher"]["wall_s"], abs=1.0)
    assert again["broken"]["exploded"] and again["teacher"]["steps"] == FAST.steps


def test_analyse_flags_each_criterion():
    from ase.calculators.singlepoint import SinglePointCalculator

    start = h2_on_cu()

    def frame(positions, forces=None, step=20):
        a = start.copy()
        a.positions = positions
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)) if forces is None else forces)
        a.info.update(md_step=step, time_fs=float(step))
        return a

    t, time_fs = np.full(2, 600.0), np.array([0.0, 20.0])
    good = stab.analyse([frame(start.positions)], start, t, time_fs, FAST, None)
    assert not good["exploded"] and good["min_hh"] == pytest.approx(0.74)
    close = start.positions.copy()
    close[-1] = close[-2] + [0.4, 0, 0]
    assert any(r.startswith("min_hh") for r in stab.analyse([frame(close)], start, t, time_fs, FAST, None)["reasons"])
    big = np.zeros((len(start), 3))
    big[0] = [0, 0, 25.0]
    assert stab.analyse([frame(start.positions, big)], start, t, time_fs, FAST, None)["exploded"]
    moved = start.positions.copy()
    moved[5] += [0, 0, 3.5]
    reasons = stab.analyse([frame(moved)], start, t, time_fs, FAST, None)["reasons"]
    assert any(r.startswith("max_cu_displacement") for r in reasons)
    wrapped = start.positions.copy()
    wrapped[5] += start.cell[0]  # the same site in the next cell: no displacement
    assert not stab.analyse([frame(wrapped)], start, t, time_fs, FAST, None)["exploded"]
    hot = stab.analyse(
        [frame(start.positions)], start, np.array([600.0, 5000.0]), time_fs, stab.StabilityConfig(), None
    )
    assert any("temperature" in r for r in hot["reasons"])


def test_histogram_distances():
    p = stab.histogram(np.full(50, 0.74), "h_h_distance")
    q = stab.histogram(np.full(50, 1.1), "h_h_distance")
    assert stab.js_distance(p, p) == pytest.approx(0.0) and stab.overlap(p, p) == pytest.approx(1.0)
    assert stab.js_distance(p, q) == pytest.approx(1.0) and stab.overlap(p, q) == pytest.approx(0.0)
    assert stab.histogram(np.array([2.0]), "h_h_distance")[-1] == 1.0  # a dissociated molecule: the overflow bin
    rng = np.random.default_rng(0)
    a = rng.normal(0.74, 0.05, 400)
    assert stab.wasserstein(a, a) == pytest.approx(0.0)
    assert stab.wasserstein(a, a + 0.3) == pytest.approx(0.3)
