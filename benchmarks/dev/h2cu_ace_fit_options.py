"""How far the fit alone (prior, noise, weights) moves an H2/Cu ACE student, from one pass of
design rows: what the evidence prefers and what each option does to both test sets.

    python benchmarks/dev/h2cu_ace_fit_options.py --run runs/h2cu --student ace_o3_d8_r4_wsteps

A linear ACE's design rows do not depend on its fit settings, so they are computed once
(`--cache`, ace-jax's rows of the student's basis): the training forces as Gram matrices per
atom group (source x element x Cu coordination x fixed in MD), the energies and every test
row in full. Each fit is then Bayesian linear regression as ace-jax solves it (the prior
gamma^2 / sigma_c^2, per-quantity noise, the joint E0 columns), the sigmas set by the
evidence (Nelder-Mead on their logs) unless a row says otherwise. First row: the student's
own hyperparameters, which must give its report's test errors (the check that the offline
solve is ace-jax's). `val800`: force RMSE on the 800 K step frames, fitted without them
(a check from training data only). Columns: force RMSE (meV/A) on each test set, and on the
held-out set by H and by Cu coordination (7: step edges, 9, 10: inner corners, 12: bulk).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

N_COORD = 7  # Cu coordination 6 (or less) .. 12, clipped
PER_SOURCE = 1 + 2 * N_COORD  # H, then Cu by (coordination, fixed in MD)
SOURCES = 3  # the flat training runs, the 600 K step frames, the 800 K step frames


def atom_groups(frames) -> np.ndarray:
    """[n_atoms over frames] group of every atom: source * PER_SOURCE + (0: H; 1 + 2 (c - 6) +
    fixed: Cu with c Cu neighbours within 3 A)."""
    from ase.neighborlist import neighbor_list

    from jaxtl.md.simulate import fixed_atoms

    out = []
    for a in frames:
        i, j = neighbor_list("ij", a, 3.0)
        c = np.clip(np.bincount(i[a.numbers[j] == 29], minlength=len(a)), 6, 12)
        flat = len(a) == 56  # the step slabs are the training slabs widened (92 atoms)
        source = 0 if flat else (1 if a.info["md_temperature"] < 700 else 2)
        local = np.where(a.numbers == 1, 0, 1 + 2 * (c - 6) + fixed_atoms(a).astype(int))
        out.append(source * PER_SOURCE + local)
    return np.concatenate(out)


def compute_rows(student: Path, cache: Path) -> None:
    """Write cache/train.npz (per-group force Grams, energy rows) and cache/test.npz (all rows)."""
    import ase.io
    import jax
    from ace_design_rows import fit_problem
    from ace_jax.fit.rows import chunked_rows_fn

    from jaxtl.distill.ace import ACEStudentConfig

    report = json.loads((student / "report.json").read_text())
    config = ACEStudentConfig.from_dict(report["student_config"])
    train, test = (ase.io.read(student / f"{s}.xyz", ":") for s in ("train", "test"))
    data, prob = fit_problem(config, train, test)
    rows = chunked_rows_fn(prob.model, prob.cfg)
    cache.mkdir(parents=True, exist_ok=True)
    for name, frames, ds in (("train", train, data.ds_train), ("test", test, data.ds_test)):
        groups, energy_rows, force_rows, forces = atom_groups(frames), [], [], []
        for k in range(ds.y_E.shape[0]):
            batch = jax.tree.map(lambda x: x[k], ds)
            r = rows(batch)
            energy_rows.append(np.asarray(r.E)[np.asarray(batch.w_E) > 0])
            force_rows.append(np.asarray(r.F)[np.asarray(batch.node_mask)])
            forces.append(np.asarray(batch.y_F)[np.asarray(batch.node_mask)])
        forces = np.concatenate(forces)
        if not np.array_equal(forces, np.concatenate([a.arrays["REF_forces"] for a in frames])):
            raise RuntimeError(f"{name}: ace-jax's batches are not in the order of {name}.xyz")
        common = dict(
            energy_rows=np.concatenate(energy_rows),
            energies=np.array([a.info["REF_energy"] for a in frames]),
            n_atoms=np.array([len(a) for a in frames]),
            E0=data.E0,
            gamma=np.asarray(prob.gamma),
        )
        force_rows = np.concatenate(force_rows)
        if name == "train":
            np.savez(cache / "train.npz", **common, **_group_grams(force_rows, forces, groups))
        else:
            split = np.concatenate([[a.info["split"] == "test_held_out_starts"] * len(a) for a in frames])
            np.savez(cache / "test.npz", **common, force_rows=force_rows, forces=forces, groups=groups, held_out=split)


def _group_grams(force_rows, forces, groups) -> dict:
    """Per atom group: G = P^T P, b = P^T y, yy = y^T y and the row count of its force rows."""
    n_groups, width = SOURCES * PER_SOURCE, force_rows.shape[-1]
    G, b = np.zeros((n_groups, width, width)), np.zeros((n_groups, width))
    yy, n = np.zeros(n_groups), np.zeros(n_groups)
    for g in np.unique(groups):
        P, y = force_rows[groups == g].reshape(-1, width), forces[groups == g].reshape(-1)
        G[g], b[g], yy[g], n[g] = P.T @ P, P.T @ y, y @ y, len(y)
    return dict(G=G, b=b, yy=yy, n=n)


class Regression:
    """ace-jax's linear-arm Bayesian regression on the cached statistics: force rows weighted per
    atom group (`w`: [n_groups]), energy rows by 1/sqrt(n_atoms), the last NZ columns the joint
    E0 shifts (prior precision 1 / eV^2), the others gamma^2 / sigma_c^2."""

    def __init__(self, cache: Path):
        t, s = np.load(cache / "train.npz"), np.load(cache / "test.npz")
        self.G, self.b, self.yy, self.n = t["G"], t["b"], t["yy"], t["n"]
        n_z = len(t["E0"])
        self.e0 = np.arange(self.G.shape[1]) >= self.G.shape[1] - n_z
        rows, target = self._energy(t)
        self.GE, self.bE, self.yyE, self.nE = rows.T @ rows, rows.T @ target, target @ target, len(target)
        self.gamma = np.concatenate([t["gamma"], np.zeros(n_z)])
        self.test_rows, self.test_forces = s["force_rows"], s["forces"]
        self.test_groups, self.held_out = s["groups"], s["held_out"]
        self._key = self._gram = None

    def _force_gram(self, w):
        if w.tobytes() != self._key:  # one weighting per evidence search: summed once
            self._key, self._gram = w.tobytes(), np.tensordot(w, self.G, 1)
        return self._gram

    @staticmethod
    def _energy(z):
        counts = z["energy_rows"][:, -len(z["E0"]) :]
        scale = 1 / np.sqrt(z["n_atoms"])
        return z["energy_rows"] * scale[:, None], (z["energies"] - counts @ z["E0"]) * scale

    def _system(self, w, gamma, sigmas):
        sc, sE, sF = sigmas
        A = self._force_gram(w) / sF**2 + self.GE / sE**2
        prior = np.where(self.e0, 1.0, gamma**2 / sc**2)
        return A + np.diag(prior), w @ self.b / sF**2 + self.bE / sE**2, prior

    def solve(self, w, gamma, sigmas) -> np.ndarray:
        import scipy.linalg as sl

        A, rhs, _ = self._system(w, gamma, sigmas)
        return sl.cho_solve(sl.cho_factor(A), rhs)

    def log_evidence(self, w, gamma, sigmas) -> float:
        import scipy.linalg as sl

        A, rhs, prior = self._system(w, gamma, sigmas)
        chol = np.linalg.cholesky(A)
        v = sl.solve_triangular(chol, rhs, lower=True)
        sc, sE, sF = sigmas
        live = w > 0
        nF = self.n[live].sum()
        fit = w @ self.yy / sF**2 + self.yyE / sE**2 - v @ v
        log_tau = (self.n[live] * np.log(w[live])).sum() - nF * np.log(sF**2) - self.nE * np.log(sE**2)
        log_det = 2 * np.log(np.diag(chol)).sum() - np.log(prior).sum() - log_tau
        return -0.5 * (fit + log_det + (nF + self.nE) * np.log(2 * np.pi))

    def evidence_sigmas(self, w, gamma, start) -> tuple[np.ndarray, float]:
        from scipy.optimize import minimize

        r = minimize(
            lambda x: -self.log_evidence(w, gamma, np.exp(x)),
            np.log(start),
            method="Nelder-Mead",
            options=dict(xatol=1e-3, fatol=1e-1, maxiter=200),
        )
        return np.exp(r.x), -r.fun

    def group_rmse(self, c, mask) -> float:
        """Force RMSE (meV/A) of the training atom groups in `mask` ([n_groups] 0/1)."""
        G, b, yy, n = np.tensordot(mask, self.G, 1), mask @ self.b, mask @ self.yy, mask @ self.n
        return 1e3 * np.sqrt((c @ G @ c - 2 * b @ c + yy) / n)

    def test_errors(self, c) -> dict:
        err2 = (self.test_rows @ c - self.test_forces) ** 2
        out = {name: 1e3 * np.sqrt(err2[self.held_out == h].mean()) for name, h in (("indep", 0), ("held_out", 1))}
        local = self.test_groups[self.held_out == 1] % PER_SOURCE
        sites = {"H": local == 0, **{f"Cu{c}": (local - 1) // 2 == c - 6 for c in (7, 9, 10, 12)}}
        for name, sel in sites.items():
            out[name] = 1e3 * np.sqrt(err2[self.held_out == 1][sel].mean())
        return out


def gamma_of(student: Path, exponent: float) -> np.ndarray:
    """The smoothness prior diagonal of the student's basis at `exponent`, joint-E0 columns 0."""
    import dataclasses

    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxtl.distill.ace import ACEStudentConfig, _basis

    report = json.loads((student / "report.json").read_text())
    config = dataclasses.replace(ACEStudentConfig.from_dict(report["student_config"]), smoothness_exponent=exponent)
    basis = _basis(config, [1, 29], None)
    return np.concatenate([basis.gamma, np.zeros(2)])


def weightings() -> dict[str, np.ndarray]:
    """Force weights per atom group of the rows of the sweep."""
    g = np.arange(SOURCES * PER_SOURCE)
    source, local = g // PER_SOURCE, g % PER_SOURCE
    is_h, coordination = local == 0, 6 + (local - 1) // 2
    cu = ~is_h
    return {
        "steps x2": np.where(source > 0, 2.0, 1.0),
        "steps x0.5": np.where(source > 0, 0.5, 1.0),
        "fixed Cu x0.3": np.where(cu & ((local - 1) % 2 == 1), 0.3, 1.0),
        "H x4": np.where(is_h, 4.0, 1.0),
        "Cu coordination <= 10 x3": np.where(cu & (coordination <= 10), 3.0, 1.0),
    }


def sweep(fit: Regression, student: Path) -> list[tuple[str, dict]]:
    """(row label, errors) for the student's own fit, the evidence refit, prior exponents,
    prior and energy noise scales off the evidence, and the force weightings."""
    report = json.loads((student / "report.json").read_text())
    own = np.exp([report["training"]["hyperparameters"][f"log_sigma_{q}"] for q in "cEF"])
    ones, gamma = np.ones(SOURCES * PER_SOURCE), gamma_of(student, 4.0)
    rows = [("own hyperparameters (the student's)", _errors(fit, ones, gamma, own, None))]
    for p in (4.0, 3.0, 2.0, 1.5, 1.0, 6.0):
        g = gamma_of(student, p)
        start = own * np.array([np.median(g[:-2]) / np.median(gamma[:-2]), 1, 1])
        sigmas, evidence = fit.evidence_sigmas(ones, g, start)
        rows.append((f"evidence, prior exponent {p:g}", _errors(fit, ones, g, sigmas, evidence)))
    sigmas, _ = fit.evidence_sigmas(ones, gamma, own)
    for label, factor in (("sigma_c", (0.3, 1, 1)), ("sigma_c", (3, 1, 1)), ("sigma_E", (1, 0.3, 1))):
        scale = factor[0] if label == "sigma_c" else factor[1]
        rows.append((f"{label} x{scale:g} of the evidence's", _errors(fit, ones, gamma, sigmas * factor, None)))
    source = np.arange(SOURCES * PER_SOURCE) // PER_SOURCE
    for label, w in weightings().items():
        s, evidence = fit.evidence_sigmas(w, gamma, sigmas)
        errors = _errors(fit, w, gamma, s, evidence)
        held = w * (source != 2)
        s_val, _ = fit.evidence_sigmas(held, gamma, s)
        errors["val800"] = fit.group_rmse(fit.solve(held, gamma, s_val), (source == 2).astype(float))
        rows.append((f"force weights: {label}", errors))
    return rows


def _errors(fit: Regression, w, gamma, sigmas, evidence) -> dict:
    errors = fit.test_errors(fit.solve(w, gamma, sigmas))
    errors["log evidence"] = evidence
    errors["log sigma c, E, F"] = ", ".join(f"{x:.2f}" for x in np.log(sigmas))
    return errors


def table(rows) -> str:
    keys = ["indep", "held_out", "H", "Cu7", "Cu9", "Cu10", "Cu12", "val800", "log evidence", "log sigma c, E, F"]
    lines = ["| fit | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, e in rows:
        cells = [e.get(k) for k in keys]
        cells = [
            ""
            if v is None
            else (
                f"{v:.2f}"
                if isinstance(v, (float, np.floating)) and abs(v) < 1e5
                else (f"{v:.1f}" if isinstance(v, (float, np.floating)) else str(v))
            )
            for v in cells
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _stamp(argv) -> str:
    import os
    import shlex

    import ace_jax

    from jaxtl.provenance import jaxtl_commit, provenance

    command = "python benchmarks/dev/h2cu_ace_fit_options.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    record = provenance(command, jaxtl_commit())
    record["versions"]["ace_jax"] = ace_jax.__version__
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"jaxtl {record['jaxtl_commit']}, {record['date']}, {record['device']}, load (1, 5, 15 min) {load}, "
        f"versions {record['versions']}. Command: `{record['command']}`. log evidence compares fits of one "
        "weighting only (the weights scale the likelihood)."
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="runs/h2cu", help="the distill_h2cu.py run folder")
    p.add_argument("--student", default="ace_o3_d8_r4_wsteps", help="an ACE student of the run (its rows)")
    p.add_argument("--cache", default=None, help="design-row cache (default RUN/fit_rows/STUDENT)")
    p.add_argument("--out", default=None, help="write the table here as markdown (default: print only)")
    args = p.parse_args(argv)
    student = Path(args.run) / "students" / args.student
    cache = Path(args.cache or Path(args.run) / "fit_rows" / args.student)
    if not (cache / "test.npz").exists():
        compute_rows(student, cache)
    text = table(sweep(Regression(cache), student))
    text += "\n\n" + _stamp(argv)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
