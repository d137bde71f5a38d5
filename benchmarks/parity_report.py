"""Largest differences between jaxtl and mace-torch, per model, float64 and float32.

    python benchmarks/parity_report.py            # writes benchmarks/results/parity.md (or --out FILE)

Models: the two real files in ../shared/models and the random mace-torch models of
tests/convert/torch_models.py (every block and option; MP-0-shaped ones included),
on the test structures of tests/structures.py (bulk, skewed small cell, slab,
cluster, isolated atom, molecule). Relative errors: energy against |E|, interaction
energy against |E - sum E0|, forces / virials / stress against the largest reference
component.
"""

import argparse
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _harness as harness  # noqa: E402
from _data import mirror_path  # noqa: E402
from convert.torch_models import REGISTRY  # noqa: E402
from structures import all_structures, real_model_structures  # noqa: E402

from jaxtl.convert import torch_eval  # noqa: E402
from jaxtl.convert.convert import compare_with_torch, from_torch_module  # noqa: E402
from jaxtl.convert.torch_reader import load_torch_model  # noqa: E402

KEYS = ["energy_rel", "interaction_energy_rel", "forces_rel", "virials_rel", "stress_rel"]


def errors(model, atoms_list, dtype):
    config, variables = from_torch_module(model)
    return compare_with_torch(model, config, variables, atoms_list, dtype)[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(harness.RESULTS / "parity.md"), help="Markdown file to write")
    args = p.parse_args(argv)
    rows = []
    real = [n for n in ("spice", "h2cu") if mirror_path(f"{n}-mace")]
    cases = [
        (
            f"{n}_mace.model (real)",
            lambda n=n: load_torch_model(mirror_path(f"{n}-mace")),
            lambda m, n=n: real_model_structures(n),
        )
        for n in real
    ]
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
    meta = harness.run_metadata("parity_report.py", argv)
    lines += [
        "",
        f"Command: `{meta['command'].strip()}`; jaxtl commit `{meta['jaxtl_commit']}`; "
        f"{harness.hardware_line()}; versions {meta['versions']}; {meta['date']}.",
    ]
    out = Path(args.out)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    main()
