"""A fitted ACE student through `jaxtl.load_calculator` against ace-jax's own calculator on
the H2/Cu speed structures (56 atoms and their 2x2 repeats): largest energy, force and
stress differences, with and without radial tables, and where a call's time goes.

    python benchmarks/dev/ace_parity.py --run runs/h2cu_students --student ace_o3_d8_r4
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a distill_h2cu.py run folder")
    p.add_argument("--student", default="ace_o3_d8_r4")
    p.add_argument("--structures", type=int, default=4, help="test structures, evenly spaced (default 4)")
    p.add_argument("--radial-table", type=int, default=4000, help="intervals of the tabulated variant")
    args = p.parse_args(argv)

    import ase.io
    import jax

    jax.config.update("jax_enable_x64", True)
    from ace_jax.calc.point import ACECalculator

    import jaxtl

    folder = f"{args.run}/students/{args.student}/student"
    test = [a for a in ase.io.read(f"{args.run}/data/labelled.xyz", ":") if a.info.get("split") != "train"]
    picked = [test[i] for i in np.linspace(0, len(test) - 1, args.structures).astype(int)]
    pairs = {
        "exact": (jaxtl.load_calculator(folder), ACECalculator(f"{folder}/model.npz")),
        f"radial_table={args.radial_table}": (
            jaxtl.load_calculator(folder, radial_table=args.radial_table),
            ACECalculator(f"{folder}/model.npz", radial_table=args.radial_table),
        ),
    }
    exact = pairs["exact"][0]
    for repeat in (1, 2):
        structures = [a.repeat((repeat, repeat, 1)) for a in picked]
        for name, (ours, theirs) in pairs.items():
            de, df, ds, dx, fmax = 0.0, 0.0, 0.0, 0.0, 0.0
            for atoms in structures:
                a, b, c = atoms.copy(), atoms.copy(), atoms.copy()
                a.calc, b.calc, c.calc = ours, theirs, exact
                de = max(de, abs(a.get_potential_energy() - b.get_potential_energy()))
                df = max(df, float(np.abs(a.get_forces() - b.get_forces()).max()))
                ds = max(ds, float(np.abs(a.get_stress() - b.get_stress()).max()))
                dx = max(dx, float(np.abs(a.get_forces() - c.get_forces()).max()))
                fmax = max(fmax, float(np.abs(b.get_forces()).max()))
            print(
                f"{len(structures[0])} atoms, {name}: vs ace-jax |dE| {de:.1e} eV, |dF| {df:.1e} eV/A, "
                f"|dstress| {ds:.1e} eV/A^3 (max|F| {fmax:.2f}); forces vs the exact path {dx:.1e} eV/A"
            )
            host, model, total = [], [], []
            for _ in range(10):
                for atoms in structures:
                    a = atoms.copy()
                    a.calc = ours
                    start = time.perf_counter()
                    a.get_potential_energy()
                    a.get_forces()
                    total.append(time.perf_counter() - start)
                    host.append(ours.last_timing["nlist_s"])
                    model.append(ours.last_timing["model_s"])
            print(
                f"    per call (medians): total {1e3 * np.median(total):.2f} ms, neighbour list + blocks "
                f"{1e3 * np.median(host):.2f} ms, compiled call {1e3 * np.median(model):.2f} ms; "
                f"{ours._layout.n_slots} neighbour slots, {ours.n_compilations} compilations"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
