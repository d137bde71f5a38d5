"""Largest differences between jaxtl and mace-torch, per model, float64 and float32.

    python benchmarks/parity_report.py            # writes benchmarks/results/parity.md

Models: the two real files in ../shared/models and the random mace-torch models of
tests/convert/torch_models.py (every block and option; MP-0-shaped ones included),
on the test structures of tests/structures.py (bulk, skewed small cell, slab,
cluster, isolated atom, molecule). Relative errors: energy against |E|, interaction
energy against |E - sum E0|, forces / virials / stress against the largest reference
component.
"""

import copy
import os
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from ase import Atoms  # noqa: E402
from ase.build import fcc111, molecule  # noqa: E402

from convert.torch_models import REGISTRY  # noqa: E402
from structures import all_structures  # noqa: E402
from jaxtl.api import build_loaded_model  # noqa: E402
from jaxtl.convert import torch_eval  # noqa: E402
from jaxtl.convert.convert import from_torch_module  # noqa: E402
from jaxtl.convert.torch_reader import load_torch_model  # noqa: E402
from jaxtl.convert.verify import compare, jaxtl_batch  # noqa: E402

SHARED = ROOT.parent / "shared" / "models"
KEYS = ["energy_rel", "interaction_energy_rel", "forces_rel", "virials_rel", "stress_rel"]


def errors(model, atoms_list, dtype):
    config, variables = from_torch_module(model)
    head = config.heads[0]
    for a in atoms_list:
        a.info["head"] = head
    ref = torch_eval.evaluate_torch(copy.deepcopy(model), atoms_list, dtype=dtype, head=head)
    loaded = build_loaded_model(config, variables, dtype=dtype, head=head if len(config.heads) > 1 else None)
    batch = jaxtl_batch(atoms_list, config.r_max, np.float64 if dtype == "float64" else np.float32)
    out = {k: np.asarray(v) for k, v in loaded.predict(batch.graph).items()}
    return compare(ref, out, atoms_list)


def real_structures(name):
    if name == "spice":
        mols = [molecule("CH3CH2OH"), molecule("C6H6"), molecule("CH3COOH")]
        mols[1].set_cell(np.eye(3) * 9.0)
        mols[1].pbc = True
        mols[1].center()
        return mols
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=0)
    top = slab.positions[:, 2].max()
    slab += Atoms("H2", positions=[[1.0, 1.0, top + 1.5], [1.0, 1.74, top + 1.5]])
    bulk = Atoms("Cu4", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
                 cell=np.eye(3) * 3.61, pbc=True)
    bulk.rattle(0.05, seed=1)
    return [slab, bulk]


def main():
    rows = []
    cases = [(f"{n}_mace.model (real)", lambda n=n: load_torch_model(SHARED / f"{n}_mace.model"),
              lambda m, n=n: real_structures(n)) for n in ("spice", "h2cu") if (SHARED / f"{n}_mace.model").exists()]
    for name, factory in REGISTRY.items():
        def structs(m):
            zs = [int(z) for z in torch_eval.model_atomic_numbers(m)]
            if len(zs) > 10:
                zs = [29, 8, 1, 26]
            return list(all_structures(zs, seed=1, r_max=torch_eval.model_r_max(m)).values())
        cases.append((name, lambda f=factory: f()[0], structs))
    for name, build, structs in cases:
        model = build()
        for dtype in ("float64", "float32"):
            e = errors(model, structs(model), dtype)
            rows.append((name, dtype, e))
            print(name, dtype, " ".join(f"{k} {e.get(k, float('nan')):.1e}" for k in KEYS), flush=True)
    lines = ["| model | dtype | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for name, dtype, e in rows:
        lines.append(f"| {name} | {dtype} | " + " | ".join(f"{e[k]:.1e}" if k in e else "-" for k in KEYS) + " |")
    out = ROOT / "benchmarks" / "results" / "parity.md"
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
