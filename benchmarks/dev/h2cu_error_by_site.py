"""Where an H2/Cu student's force error sits: per-atom force errors against the teacher's
labels on each test set, split by element, by Cu coordination (Cu neighbours within
`--cu-shell` A: step edges of Cu(211) have 7, terraces 9, bulk 12), by the H2's height
above the Cu atom nearest below it, by H-H distance, and by start and temperature.

    python benchmarks/dev/h2cu_error_by_site.py --run runs/h2cu --students ace_o3_d8_r4_hot

A row: atoms (n), force RMSE per component over those atoms (meV/A), and the share of the
set's squared error they carry (how much of the RMSE the group explains).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

CU, H = 29, 1


def cu_coordination(atoms, shell: float) -> np.ndarray:
    """[n_atoms] Cu neighbours of every atom within `shell` A (periodic)."""
    from ase.neighborlist import neighbor_list

    i, j = neighbor_list("ij", atoms, shell)
    keep = atoms.numbers[j] == CU
    return np.bincount(i[keep], minlength=len(atoms))


def h2_height(atoms) -> float:
    """Height (A) of the H2 centre above the highest Cu atom within 3 A laterally of it
    (minimum image in the surface plane), so a molecule over a step's lower terrace is
    measured from that terrace."""
    h = atoms.numbers == H
    centre = atoms.positions[h].mean(axis=0)
    cu = atoms.positions[atoms.numbers == CU]
    cell2 = atoms.cell.array[:2, :2]
    d = cu[:, :2] - centre[:2]
    frac = np.linalg.solve(cell2.T, d.T).T
    d = (frac - np.round(frac)) @ cell2
    near = np.linalg.norm(d, axis=1) < 3.0
    top = cu[near, 2].max() if near.any() else cu[:, 2].max()
    return float(centre[2] - top)


def per_atom(calc, frames, shell: float) -> list[dict]:
    """One record per frame: squared force errors per atom [n_atoms] (eV^2/A^2, summed over
    x, y, z), numbers, Cu coordination, H2 height, H-H distance and the frame's tags."""
    import ase

    from jaxtl.md.simulate import fixed_atoms

    out = []
    for a in frames:
        b = ase.Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        b.calc = calc
        err = b.get_forces() - np.asarray(a.arrays["REF_forces"])
        hpos = a.positions[a.numbers == H]
        out.append(
            dict(
                sq=np.sum(err**2, axis=1),
                numbers=a.numbers,
                coordination=cu_coordination(a, shell),
                height=h2_height(a),
                hh=float(a.get_distance(*np.flatnonzero(a.numbers == H), mic=True)) if len(hpos) == 2 else np.nan,
                source=a.info.get("source", "?"),
                start=int(a.info.get("sample_start", -1)),
                temperature=float(a.info.get("md_temperature", np.nan)),
                fixed=fixed_atoms(a),
            )
        )
    return out


def groups(records) -> dict[str, dict[str, np.ndarray]]:
    """{split by: {group label: [n] squared errors of its atoms}}."""
    by = defaultdict(lambda: defaultdict(list))
    for r in records:
        sq, z, cn = r["sq"], r["numbers"], r["coordination"]
        by["element"]["H"].append(sq[z == H])
        by["element"]["Cu"].append(sq[z == CU])
        for c in np.unique(cn[z == CU]):
            by["Cu coordination"][f"{int(c):2d}"].append(sq[(z == CU) & (cn == c)])
        for c in np.unique(cn[z == CU]):
            for fixed, label in ((True, "fixed"), (False, "free")):
                pick = (z == CU) & (cn == c) & (r["fixed"] == fixed)
                by["Cu coordination, fixed in MD or free"][f"{int(c):2d} {label}"].append(sq[pick])
        edges = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 99.0)
        k = np.searchsorted(edges, r["height"]) - 1
        by["H2 height (A), H atoms"][f"{edges[k]:.1f}-{edges[k + 1]:.1f}"].append(sq[z == H])
        by["H2 height (A), Cu atoms"][f"{edges[k]:.1f}-{edges[k + 1]:.1f}"].append(sq[z == CU])
        hh_edges = (0.0, 0.7, 0.8, 0.9, 1.2, 2.0, 99.0)
        k = np.searchsorted(hh_edges, r["hh"]) - 1
        by["H-H distance (A), H atoms"][f"{hh_edges[k]:.1f}-{hh_edges[k + 1]:.1f}"].append(sq[z == H])
        by["start, T"][f"{r['start']} {r['source']} {r['temperature']:.0f} K"].append(sq)
    return {k: {g: np.concatenate(v) for g, v in sorted(d.items())} for k, d in by.items()}


def table(name: str, records) -> str:
    total = sum(float(r["sq"].sum()) for r in records)
    n_atoms = sum(len(r["sq"]) for r in records)
    lines = [f"### {name}: {len(records)} frames, force RMSE {1e3 * np.sqrt(total / (3 * n_atoms)):.1f} meV/A"]
    for by, d in groups(records).items():
        lines.append(f"{by}:")
        for g, sq in d.items():
            if len(sq):
                rmse = 1e3 * np.sqrt(sq.mean() / 3)
                lines.append(f"  {g:>28s}  n={len(sq):6d}  {rmse:6.1f} meV/A  share {sq.sum() / total:5.1%}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a distill_h2cu.py run folder")
    p.add_argument("--students", nargs="+", default=["ace_o3_d8_r4_hot"])
    p.add_argument("--test", default=None, help="labelled test frames (default: the first student's test.xyz)")
    p.add_argument("--cu-shell", type=float, default=3.0, help="Cu-Cu neighbour shell for coordination (A)")
    p.add_argument("--json", default=None, help="also write {student: {set: {split: {group: rmse}}}} here")
    args = p.parse_args(argv)

    import ase.io

    from jaxtl.distill.students import load_calculator

    test_file = args.test or f"{args.run}/students/{args.students[0]}/test.xyz"
    frames = ase.io.read(test_file, ":")
    sets = defaultdict(list)
    for a in frames:
        sets[a.info.get("split", "?")].append(a)
    summary = {}
    for student in args.students:
        calc = load_calculator(f"{args.run}/students/{student}/student")
        summary[student] = {}
        for split, subset in sorted(sets.items()):
            records = per_atom(calc, subset, args.cu_shell)
            print(table(f"{student} on {split}", records), flush=True)
            summary[student][split] = {
                by: {g: 1e3 * float(np.sqrt(sq.mean() / 3)) for g, sq in d.items() if len(sq)}
                for by, d in groups(records).items()
            }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
