"""Teacher and student energy+forces timed side by side on the same structures and device."""

from __future__ import annotations

import time
from collections.abc import Sequence

import ase
import jax
import numpy as np

from jaxtl.api import LoadedModel
from jaxtl.graph.batching import batch_atoms


def _graphs(model: LoadedModel, structures: Sequence[ase.Atoms]):
    dtype = np.float64 if model.config.dtype == "float64" else np.float32
    return [batch_atoms([a], model.config.r_max, dtype).graph for a in structures]


def _call(model: LoadedModel, graph) -> float:
    start = time.perf_counter()
    jax.block_until_ready(model.predict(graph, compute_stress=False))
    return time.perf_counter() - start


def compare_speed(models: dict[str, LoadedModel], structures: Sequence[ase.Atoms], repeats: int = 20) -> dict:
    """Median wall time of one energy+forces call (one structure a call, no stress).

    Every model is compiled first; then the calls are interleaved (structure by
    structure, model by model, `repeats` rounds) so that background load affects all
    models alike. Neighbour lists are built once beforehand, outside the timing.

    Returns {name: {"ms_per_call": median ms, "ms_per_atom_call": ..., "n_calls": ...},
    "n_structures", "n_atoms_mean", "device"}.
    """
    graphs = {name: _graphs(m, structures) for name, m in models.items()}
    for name, m in models.items():
        for g in graphs[name]:
            _call(m, g)  # compile every shape
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for i in range(len(structures)):
            for name, m in models.items():
                times[name].append(_call(m, graphs[name][i]))
    n_atoms = float(np.mean([len(a) for a in structures]))
    out = {
        name: {
            "ms_per_call": 1e3 * float(np.median(t)),
            "ms_per_atom_call": 1e3 * float(np.median(t)) / n_atoms,
            "n_calls": len(t),
        }
        for name, t in times.items()
    }
    out.update(n_structures=len(structures), n_atoms_mean=n_atoms, device=str(jax.devices()[0]))
    return out


def speedup(teacher: LoadedModel, student: LoadedModel, structures: Sequence[ase.Atoms], repeats: int = 20) -> dict:
    """`compare_speed` of the pair plus `speedup` = teacher ms / student ms."""
    timing = compare_speed({"teacher": teacher, "student": student}, structures, repeats)
    timing["speedup"] = timing["teacher"]["ms_per_call"] / timing["student"]["ms_per_call"]
    return timing


def n_parameters(model: LoadedModel) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(model.params)))


def _calculator_call(calc, atoms: ase.Atoms) -> float:
    atoms = atoms.copy()
    atoms.calc = calc
    start = time.perf_counter()
    atoms.get_potential_energy()
    atoms.get_forces()
    return time.perf_counter() - start


def compare_calculators(calculators: dict, structures: Sequence[ase.Atoms], repeats: int = 20) -> dict:
    """Median wall time of one energy+forces call through ASE, for any calculators
    (MACE or ACE students, teachers): host neighbour lists, padding and copies included,
    as an MD code driving the calculator pays them.

    Each calculator is called once per structure first (compilation); then calls are
    interleaved structure by structure, calculator by calculator, `repeats` rounds, so
    background load affects all alike. Each timed call follows an untimed call of the same
    calculator (on the previous structure), as in an MD code calling one model step after
    step: the first calls after another model's are slower than the next (for several calls
    after a model 40x larger, on the 2-core CPU of
    benchmarks/results/dev_calls_after_large_model.md: time such a model in a pass of its
    own). Every call gets a fresh copy of its structure and a reset
    calculator, so nothing is served from ASE's cache.

    Returns {name: {"ms_per_call", "ms_per_atom_call", "n_calls"}, "n_structures",
    "n_atoms_mean", "device"}; calculators that time their own model (ace-jax's
    `last_timing["model_s"]`) add "model_ms_per_call", the call without neighbour list
    and host work.
    """
    for calc in calculators.values():
        for a in structures:
            _calculator_call(calc, a)
    times: dict[str, list[float]] = {name: [] for name in calculators}
    model_times: dict[str, list[float]] = {name: [] for name in calculators}
    for _ in range(repeats):
        for i, a in enumerate(structures):
            for name, calc in calculators.items():
                calc.reset()
                _calculator_call(calc, structures[i - 1])  # untimed: this calculator's caches warm again
                calc.reset()
                times[name].append(_calculator_call(calc, a))
                model_s = (getattr(calc, "last_timing", None) or {}).get("model_s")
                if model_s is not None:  # ace-jax reports its model's share of the call
                    model_times[name].append(model_s)
    n_atoms = float(np.mean([len(a) for a in structures]))
    out = {
        name: {
            "ms_per_call": 1e3 * float(np.median(t)),
            "ms_per_atom_call": 1e3 * float(np.median(t)) / n_atoms,
            "n_calls": len(t),
        }
        for name, t in times.items()
    }
    for name, t in model_times.items():
        if t:
            out[name]["model_ms_per_call"] = 1e3 * float(np.median(t))
    out.update(n_structures=len(structures), n_atoms_mean=n_atoms, device=str(jax.devices()[0]))
    return out
