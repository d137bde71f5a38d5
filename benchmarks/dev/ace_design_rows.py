"""What an ACE basis can reach on aspirin, apart from the evidence fit: least squares on its design rows.

For each basis (a JSON of `ACEStudentConfig` fields), the energy and force rows of ace-jax's
linear model (with its joint-E0 columns) are built for evenly spaced rMD17 aspirin_train and
aspirin_test structures (DFT labels), and the coefficients solved by ridge regression with
prior precision lam * gamma^2 for each --lam (gamma: the basis's smoothness prior, or ones with
--iso; lam 0: plain least squares). One JSON line per basis and lam: functions, force RMSE
(meV/A) and energy RMSE (meV/atom) on the training and test structures, the time of the rows.

    python benchmarks/dev/ace_design_rows.py --train-n 300 --test-n 200 --lam 0 1e-10 1e-8 \
        --basis '{"degree": 7}' '{"degree": 4}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DFT_DIR = Path("../shared/data/molecules")


def dft_frames(name: str, n: int):
    """`n` evenly spaced structures of an rMD17 aspirin file, labels as REF_energy / REF_forces."""
    import ase.io

    frames = ase.io.read(DFT_DIR / name, ":")
    frames = [frames[i] for i in np.linspace(0, len(frames) - 1, n).astype(int)] if n else frames
    for a in frames:
        a.info["REF_energy"], a.arrays["REF_forces"] = a.get_potential_energy(), a.get_forces()
    return frames


def fit_problem(config, train, test=None):
    """(ace-jax's fit data, the linear problem its fit solves) for a jaxtl `ACEStudentConfig`
    and teacher- or DFT-labelled frames (REF_energy / REF_forces); x64 on."""
    from ace_jax.fit.pipeline import load_fit_data
    from ace_jax.fit.pipeline.problem import build_problem

    from jaxtl.distill.ace import _basis, _enable_x64, _fit_config, _label_frames

    _enable_x64()
    elements = sorted({int(z) for a in train for z in a.numbers})
    fit_config = _fit_config(config, _basis(config, elements, None), elements)
    fit_config.validate()
    test = None if test is None else _label_frames(test)
    data = load_fit_data(fit_config, train=_label_frames(train), test=test, log=lambda *a, **k: None)
    return data, build_problem(fit_config, data).prob


def design_rows(frames, config) -> dict:
    """The energy rows PE [n_structures, n_basis + n_elements] (the last columns count each
    element's atoms), force rows PF [3 n_atoms, same], targets yE (E0s taken off, eV) and yF
    (eV/A), atoms per structure, and the smoothness prior gamma [n_basis]."""
    import jax
    from ace_jax.fit.rows import linear_rows_bounded

    data, problem = fit_problem(config, frames)
    rows = jax.jit(lambda batch: linear_rows_bounded(problem.model, problem.cfg, batch))
    out = {k: [] for k in ("PE", "PF", "yE", "yF", "nat")}
    ds = data.ds_train
    for i in range(ds.n_batches):
        batch = jax.tree.map(lambda a: a[i], ds)
        r = rows(batch)
        live, nodes = np.asarray(batch.cfg_mask), np.asarray(batch.node_mask)
        out["PE"].append(np.asarray(r.E)[live])
        out["yE"].append(np.asarray(batch.y_E)[live])
        out["nat"].append(np.asarray(batch.n_atoms)[live])
        out["PF"].append(np.asarray(r.F)[nodes].reshape(-1, r.F.shape[-1]))
        out["yF"].append(np.asarray(batch.y_F)[nodes].reshape(-1))
    out = {k: np.concatenate(v) for k, v in out.items()}
    out["gamma"] = np.asarray(problem.gamma)
    return out


def errors(rows: dict, coef) -> tuple[float, float]:
    """(force RMSE in meV/A, energy RMSE in meV/atom) of coefficients `coef` on `rows`."""
    de = (rows["PE"] @ coef - rows["yE"]) / rows["nat"]
    df = rows["PF"] @ coef - rows["yF"]
    return 1e3 * float(np.sqrt(np.mean(df**2))), 1e3 * float(np.sqrt(np.mean(de**2)))


def ridge(rows: dict, gamma, lam: float):
    """Coefficients minimising |PE c - yE|^2 + |PF c - yF|^2 + lam |gamma c|^2 (E0 columns free),
    by a least-squares solve of the stacked system (the Gram matrix is too ill-conditioned)."""
    n_basis, n_all = len(gamma), rows["PE"].shape[1]
    prior = np.sqrt(lam) * np.hstack([np.diag(gamma), np.zeros((n_basis, n_all - n_basis))])
    A = np.vstack([rows["PE"], rows["PF"], prior])
    y = np.concatenate([rows["yE"], rows["yF"], np.zeros(n_basis)])
    return np.linalg.lstsq(A, y, rcond=None)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-n", type=int, default=300)
    p.add_argument("--test-n", type=int, default=200)
    p.add_argument("--lam", type=float, nargs="+", default=[0.0])
    p.add_argument("--iso", action="store_true", help="an isotropic ridge (gamma = 1) instead of the smoothness prior")
    p.add_argument("--basis", nargs="+", default=['{"degree": 7}'], help="ACEStudentConfig fields as JSON")
    args = p.parse_args(argv)

    from jaxtl.distill.ace import ACEStudentConfig

    train, test = dft_frames("aspirin_train.extxyz", args.train_n), dft_frames("aspirin_test.extxyz", args.test_n)
    for spec in args.basis:
        config = ACEStudentConfig(**json.loads(spec))
        started = time.perf_counter()
        tr, te = design_rows(train, config), design_rows(test, config)
        rows_s = time.perf_counter() - started
        gamma = np.ones_like(tr["gamma"]) if args.iso else tr["gamma"]
        for lam in args.lam:
            coef = ridge(tr, gamma, lam)
            (f_tr, e_tr), (f_te, e_te) = errors(tr, coef), errors(te, coef)
            row = dict(basis=json.loads(spec), prior="iso" if args.iso else "smooth", lam=lam, n_basis=len(gamma))
            row.update(train_n=len(train), test_n=len(test), train_F=round(f_tr, 1), train_E=round(e_tr, 2))
            row.update(test_F=round(f_te, 1), test_E=round(e_te, 2), rows_s=round(rows_s))
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
