"""compare_calculators times each calculator as an MD code sees it: warm, one model after another."""

import time

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from jaxtl.distill.speed import compare_calculators

COLD_S, WARM_S = 0.05, 0.001


class _ColdAfterOthers(Calculator):
    """Slow on the first call after another calculator ran (a model whose caches the other
    model evicted), fast on the next ones: the effect compare_calculators must not time."""

    implemented_properties = ["energy", "forces"]
    last = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        time.sleep(WARM_S if _ColdAfterOthers.last is self else COLD_S)
        _ColdAfterOthers.last = self
        self.results.update(energy=0.0, forces=np.zeros((len(self.atoms), 3)))


def test_each_timed_call_follows_a_call_of_the_same_calculator():
    structures = [Atoms("H2", positions=[[0, 0, 0], [0, 0, d]]) for d in (0.7, 0.8)]
    timing = compare_calculators({"a": _ColdAfterOthers(), "b": _ColdAfterOthers()}, structures, repeats=2)
    for name in ("a", "b"):
        assert timing[name]["n_calls"] == 4
        assert timing[name]["ms_per_call"] < 1e3 * COLD_S / 2, timing[name]
