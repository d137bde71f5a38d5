"""Linear ACE students, fitted to a teacher's labels with ace-jax (the `ace` extra).

A linear ACE is a fixed symmetric basis (body order, polynomial degree, cutoff) and
one coefficient per basis function, found by Bayesian linear regression: the noise of
energies and forces and the prior scale are set by maximising the evidence, and the
posterior gives each prediction a variance. The student folder holds ace-jax's own
`model.npz` (readable by `ace_jax.ACECalculator`, `aj eval`, LAMMPS export) and a
`student.json` naming its kind and settings, which `jaxtl.load_calculator` reads.

    config = ACEStudentConfig(order=3, degree=10, r_max=5.0)
    fit = fit_ace_student(train_atoms, config, "out/student", e0s={1: -13.6, 29: -1.2},
                          test_sets={"independent": test_atoms})

ace-jax fits in float64: `fit_ace_student` switches on `jax_enable_x64`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import ase
import numpy as np
from ase.data import chemical_symbols

from jaxtl.graph.io import DataError

log = logging.getLogger("jaxtl.distill")

KIND = "ace"
MODEL_FILE = "model.npz"
COMMITTEE_FILE = "committee_{}.npz"  # a readout drawn from the posterior (ace-jax's model.npz format)
STUDENT_FILE = "student.json"
ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"

# Bond lengths (A) for elements ace-jax's table lacks: r0(Zi, Zj), the distance its
# radial transform resolves best, is the mean of the two elements' lengths.
EXTRA_BOND_LENGTHS = {1: 0.74}  # the H2 bond


def require_ace_jax():
    """The ace_jax module, or an ImportError naming the extra that installs it."""
    try:
        import ace_jax
    except ImportError as err:
        raise ImportError("ACE students need ace-jax: pip install 'jaxtl[ace]' (ace-jax>=0.4.1)") from err
    return ace_jax


@dataclasses.dataclass(frozen=True)
class ACEStudentConfig:
    """The basis and the fit of a linear ACE student.

    Attributes:
        kind: "ace" (names the student kind in a saved config).
        order: correlation order (body order - 1), e.g. 3 for a 4-body ACE.
        degree: total polynomial degree of the basis (ace-jax's max_degree).
        r_max: cutoff in A.
        r0: per-element bond length in A, as ((Z, r), ...); elements not given take
            ace-jax's table, or EXTRA_BOND_LENGTHS (H), else an error naming them.
        elements: atomic numbers of the basis (empty: those of the training structures).
        solver: "cholesky" (evidence and posterior from a Cholesky of the Gram matrix)
            or "qr" (stable when the fit nearly interpolates its data). ace-jax writes
            model.npz from statistics it may reuse only from the QR form: with
            "cholesky" it makes one more pass over the training set when saving.
        polish: Newton-polish the evidence maximum (a refinement that rarely changes
            the coefficients; off is faster).
        smoothness_prior: ace-jax's algebraic smoothness prior on the coefficients
            (regularises high degrees), rescaled by `prior_gamma`; off: an isotropic prior.
        smoothness_exponent: p of that prior, whose precision scale of a basis function
            is the sum over its bodies (n, l) of (3 l / 2)^p + n^p (ACEpotentials' default p 4). A lower p
            penalises high degrees less steeply relative to low ones; the evidence still
            sets the prior's overall scale. Compare fits by their log evidence.
        wL: weight of the angular degree in the total degree (ace-jax's default 1.5).
        map_steps: L-BFGS iterations of the evidence maximisation.
        e0: "lsq": one energy per element fitted jointly with the coefficients (a wide
            prior around least squares on the training energies); the basis has no
            constant term, so this carries a teacher's per-atom shift. "fixed": the
            given e0s (isolated-atom energies) kept as they are.
        uncertainty_structures: test structures per set (evenly spaced) whose posterior
            and predictive std are computed; the variances cost a design-row pass per structure.
        seed: seed of the fit.
    """

    kind: str = KIND
    order: int = 3
    degree: int = 10
    r_max: float = 5.0
    r0: tuple = ()
    elements: tuple = ()
    solver: str = "cholesky"
    polish: bool = False
    smoothness_prior: bool = True
    smoothness_exponent: float = 4.0
    wL: float = 1.5
    map_steps: int = 500
    e0: str = "lsq"
    uncertainty_structures: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.kind != KIND:
            raise ValueError(f"ACEStudentConfig.kind is {KIND!r}, got {self.kind!r}")
        object.__setattr__(self, "r0", tuple((int(z), float(r)) for z, r in dict(self.r0).items()))
        object.__setattr__(self, "elements", tuple(int(z) for z in self.elements))
        if self.e0 not in ("lsq", "fixed"):
            raise ValueError(f"e0 must be 'lsq' or 'fixed', got {self.e0!r}")
        if self.solver not in ("cholesky", "qr"):
            raise ValueError(f"solver must be 'cholesky' or 'qr', got {self.solver!r}")
        if not self.smoothness_exponent > 0:
            raise ValueError(f"smoothness_exponent must be > 0, got {self.smoothness_exponent!r}")
        if self.order < 1 or self.degree < 1 or self.r_max <= 0:
            raise ValueError(f"invalid ACE basis: order {self.order}, degree {self.degree}, r_max {self.r_max}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["r0"] = [list(p) for p in self.r0]
        d["elements"] = list(self.elements)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ACEStudentConfig:
        d = dict(d)
        d["r0"] = tuple(tuple(p) for p in d.get("r0", ()))
        d["elements"] = tuple(d.get("elements", ()))
        return cls(**d)

    def r0_table(self, elements: Sequence[int]) -> np.ndarray:
        """[n_elements, n_elements] r0 in A: the mean of the two elements' bond lengths."""
        from ace_jax.basis.radial_init import BOND_LEN

        given = dict(self.r0)
        lengths, missing = [], []
        for z in elements:
            r = given.get(z, BOND_LEN.get(z, EXTRA_BOND_LENGTHS.get(z)))
            if r is None:
                missing.append(chemical_symbols[z])
            lengths.append(r)
        if missing:
            raise ValueError(
                f"no bond length r0 for {', '.join(missing)}: give one (ACEStudentConfig.r0, --ace-r0 {missing[0]}=<A>)"
            )
        lengths = np.asarray(lengths, float)
        return 0.5 * (lengths[:, None] + lengths[None, :])


def check_student_elements(frames: Sequence[ase.Atoms], elements: Sequence[int], source: str = "<structures>") -> None:
    """DataError naming the element and frame when a structure holds an element the basis lacks."""
    known = set(int(z) for z in elements)
    for i, atoms in enumerate(frames):
        missing = sorted(set(np.unique(atoms.numbers).tolist()) - known)
        if missing:
            names = ", ".join(chemical_symbols[z] for z in sorted(known))
            raise DataError(
                f"{source}, frame {i}: element {chemical_symbols[missing[0]]} (Z={missing[0]}) is not "
                f"one of the ACE student's elements [{names}]"
            )


def _enable_x64() -> None:
    import jax

    if not jax.config.jax_enable_x64:
        log.info("ace-jax fits in float64: switching on jax_enable_x64")
        jax.config.update("jax_enable_x64", True)


def _label_frames(frames: Sequence[ase.Atoms]) -> list[ase.Atoms]:
    """Copies holding only the teacher's energy and forces (ace-jax reads info/arrays keys).
    A molecule (no periodic direction) without a cell gets its bounding box as one, since
    ace-jax's neighbour list inverts the cell; with pbc off the cell changes nothing else."""
    out = []
    for i, a in enumerate(frames):
        if ENERGY_KEY not in a.info or FORCES_KEY not in a.arrays:
            raise DataError(f"structure {i}: no teacher labels ({ENERGY_KEY}, {FORCES_KEY})")
        cell = a.cell[:]
        if not a.pbc.any() and abs(np.linalg.det(cell)) < 1e-12:
            cell = np.diag(np.ptp(a.positions, axis=0) + 1.0)
        b = ase.Atoms(numbers=a.numbers, positions=a.positions, cell=cell, pbc=a.pbc)
        b.info[ENERGY_KEY] = float(a.info[ENERGY_KEY])
        b.arrays[FORCES_KEY] = np.asarray(a.arrays[FORCES_KEY], float)
        out.append(b)
    return out


def fit_ace_student(
    labelled: Sequence[ase.Atoms],
    config: ACEStudentConfig,
    out_dir,
    e0s: Mapping[int, float] | None = None,
    test_sets: Mapping[str, Sequence[ase.Atoms]] | None = None,
    committee: int = 0,
) -> dict:
    """Fit a linear ACE to teacher labels (REF_energy in eV, REF_forces in eV/A).

    Args:
        labelled: training structures.
        config: basis and fit settings.
        out_dir: the student folder: model.npz (ace-jax's format), student.json, and
            progress.jsonl (ace-jax's stage events while the fit runs).
        e0s: isolated-atom energies in eV by atomic number (the teacher's), used when
            config.e0 is "fixed"; recorded either way.
        test_sets: held-out labelled structures by name; the posterior and predictive
            standard deviations of up to config.uncertainty_structures of each go into
            the returned "uncertainty" (`_uncertainty`).
        committee: coefficient vectors drawn from the posterior, each written as a model
            file of its own (`committee_files`): their spread is the posterior's, read
            through the same fast calculator as the student (`jaxtl.distill.committee`).

    Returns the fit record (also in student.json): basis size, timings, the evidence
    maximum, and per test set the median posterior and predictive energy std (meV/atom)
    and force std (meV/A) next to the actual errors, and the share of errors inside 1 std.
    """
    require_ace_jax()
    _enable_x64()
    import ace_jax
    from ace_jax.fit.pipeline import fit, load_fit_data, save_model
    from ace_jax.fit.progress import progress_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = _label_frames(labelled)
    elements = list(config.elements) or sorted({int(z) for a in train for z in a.numbers})
    check_student_elements(labelled, elements, "training structures")
    tests = _uncertainty_subsets(test_sets or {}, elements, config.uncertainty_structures)

    started = time.perf_counter()
    basis = _basis(config, elements, e0s)
    basis_s = time.perf_counter() - started
    fit_config = _fit_config(config, basis, elements)
    names = list(tests)
    test_frames = [a for name in names for a in tests[name]]
    quiet = lambda *a, **k: None  # noqa: E731  (ace-jax prints every evaluation)
    with progress_file(out / "progress.jsonl"):  # ace-jax's stage events, to follow a long fit
        # ace-jax predicts its test split, and with none the whole training set: a pass as long
        # as the fit's own, so with no test frames one training structure stands in
        data = load_fit_data(fit_config, train=train, test=test_frames or train[:1], log=quiet)
        result = fit(fit_config, data, log=quiet)
        if committee:  # the posterior the draws and the model file share, factored once
            result = _with_map_posterior(result)
        path = save_model(result, out, log=quiet)
    if path is None:
        raise RuntimeError("ace-jax wrote no model file")
    record = _fit_record(config, elements, e0s, basis, result, len(train))
    if committee:
        record["committee"] = _write_posterior_draws(result, out, committee, config.seed)
    record.update(ace_jax_version=ace_jax.__version__, fit_s=time.perf_counter() - started, basis_s=basis_s)
    if test_frames:
        record["uncertainty"] = _uncertainty(result.preds.arrays["test/map"], [len(tests[n]) for n in names], names)
    (out / STUDENT_FILE).write_text(json.dumps(record, indent=2))
    log.info(
        "ACE student: %d basis functions, fitted to %d structures in %.1f s",
        record["n_basis"],
        len(train),
        record["fit_s"],
    )
    return record


def committee_files(folder) -> list[Path]:
    """The posterior-draw model files of an ACE student folder (empty when none were drawn)."""
    record = read_student(folder)
    return [Path(folder) / name for name in record.get("committee", [])]


def _with_map_posterior(result):
    """The fit result holding the posterior (mu, L) at its MAP hyperparameters, which ace-jax
    otherwise recomputes (a pass over the training set) each time it is asked for it."""
    from ace_jax.fit.pipeline.export import _posterior
    from ace_jax.fit.predict import theta_key

    posterior = _posterior(result, result.theta)
    return result._replace(posteriors={**(result.posteriors or {}), theta_key(result.theta): posterior})


def _write_posterior_draws(result, out: Path, n: int, seed: int) -> list[str]:
    """`n` readouts drawn from the Gaussian posterior N(mu, S^-1) of the fit, S = L L^T its
    precision, each written as COMMITTEE_FILE; returns the file names."""
    from ace_jax.fit.pipeline.export import _posterior, linear_arrays_from_mean

    mu, chol = (np.asarray(a, np.float64) for a in _posterior(result, result.theta))
    rng = np.random.default_rng([seed, n])
    names = []
    for k in range(n):
        draw = mu + np.linalg.solve(chol.T, rng.standard_normal(mu.shape))  # covariance S^-1
        names.append(COMMITTEE_FILE.format(k))
        arrays = linear_arrays_from_mean(result.data.z, result.data.E0, result.built.prob.cfg, draw)
        np.savez(out / names[-1], **arrays)
    return names


def _uncertainty_subsets(
    test_sets: Mapping[str, Sequence[ase.Atoms]], elements: Sequence[int], n: int
) -> dict[str, list[ase.Atoms]]:
    """Up to `n` evenly spaced labelled structures of each test set (their posterior std is
    computed); an element outside the basis is named."""
    tests = {}
    for name, frames in test_sets.items():
        check_student_elements(frames, elements, f"test set {name}")
        if frames:
            keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), n)).astype(int))
            tests[name] = _label_frames([frames[i] for i in keep])
    return tests


def parse_r0(items: Sequence[str]) -> tuple[tuple[int, float], ...]:
    """`ACEStudentConfig.r0` pairs (Z, bond length in A) from "ELEMENT=LENGTH" strings
    (e.g. "H=0.74"); ValueError naming an item that is not one."""
    from ase.data import atomic_numbers

    pairs = {}
    for item in items:
        symbol, _, value = item.partition("=")
        try:
            pairs[atomic_numbers[symbol]] = float(value)
        except (KeyError, ValueError):
            raise ValueError(f"{item!r}: expected ELEMENT=LENGTH, e.g. H=0.74") from None
    return tuple(pairs.items())


def prior_gamma(smoothness: np.ndarray, smooth: bool) -> np.ndarray:
    """[n_basis] the prior's gamma: the coefficients' prior precision is gamma^2 / sigma_c^2.

    smooth: ace-jax's algebraic smoothness prior (`smoothness`, 1 for the smoothest function,
    about (3l)^4 / 16 + n^4 summed over a function's bodies), divided by the square root of its
    largest value. ace-jax's evidence maximisation keeps sigma_c in [1e-2, 1e4]; the raw
    smoothness gamma reaches 1.9e5 at degree 7 and 1e6 at degree 10, so an aspirin fit ended at
    the upper bound, its high-degree functions held by a prior stronger than the evidence asked
    for. The division centres the reachable scales on the prior's geometric middle: relative
    weights, and so the kind of prior, are unchanged. Not smooth: an isotropic prior (all ones).
    """
    smoothness = np.asarray(smoothness, np.float64)
    if not smooth:
        return np.ones_like(smoothness)
    if smoothness.size == 0 or not np.all(smoothness > 0):
        raise ValueError("the smoothness prior must be positive for every basis function")
    return smoothness / np.sqrt(smoothness.max())


def _basis(config: ACEStudentConfig, elements: Sequence[int], e0s: Mapping[int, float] | None):
    """ace-jax's basis of `config`, its smoothness prior of exponent config.smoothness_exponent,
    its E0s set to `e0s` when config.e0 is "fixed"."""
    from ace_jax.basis.model import build_model
    from ace_jax.basis.prior import model_nnll, smoothness_prior

    basis = build_model(
        elements,
        config.order,
        config.degree,
        wL=config.wL,
        rcut=config.r_max,
        r0=config.r0_table(elements),
        seed=config.seed,
    )
    # ace-jax rebuilds the smoothness prior when a basis carries none, so an isotropic prior
    # is a basis whose gamma is all ones, never one built without gamma; the smooth prior's
    # diagonal runs over the basis columns (tensor, then pair, per species)
    smoothness = (
        smoothness_prior(model_nnll(basis.meta), p=config.smoothness_exponent)
        if config.smoothness_prior
        else np.asarray(basis.gamma)
    )
    basis = basis._replace(gamma=prior_gamma(np.asarray(smoothness), config.smoothness_prior))
    if config.e0 != "fixed":
        return basis
    if e0s is None:
        raise ValueError("ACEStudentConfig.e0 'fixed' needs the e0s (isolated-atom energies)")
    import equinox as eqx
    import jax.numpy as jnp

    missing = [chemical_symbols[z] for z in elements if z not in e0s]
    if missing:
        raise ValueError(f"no E0 for {', '.join(missing)}")
    e0 = jnp.asarray([float(e0s[z]) for z in elements])
    return basis._replace(model=eqx.tree_at(lambda m: m.E0, basis.model, e0))


def _fit_config(config: ACEStudentConfig, basis, elements: Sequence[int]):
    """ace-jax's FitConfig: Bayesian linear regression on the teacher's energies and forces."""
    from ace_jax.fit.pipeline import FitConfig

    return FitConfig(
        model=basis,
        arm="linear",
        energy_key=ENERGY_KEY,
        force_key=FORCES_KEY,
        e0="model" if config.e0 == "fixed" else "lsq",
        lml_solver=config.solver,
        map_polish="on" if config.polish else "off",
        map_steps=config.map_steps,
        predict_train=False,
        seed=config.seed,
        r0=float(np.mean(config.r0_table(elements))),
    )


def _fit_record(config: ACEStudentConfig, elements, e0s, basis, result, n_train: int) -> dict:
    """student.json's record of a fit: kind, settings, E0s, basis size, timings, the evidence."""
    from ace_jax.fit.pipeline.outputs import fitted_e0

    return {
        "kind": KIND,
        "model_file": MODEL_FILE,
        "config": config.to_dict(),
        "elements": elements,
        "e0": config.e0,
        "e0_fitted": dict(zip((str(z) for z in elements), map(float, fitted_e0(result)))),
        "teacher_e0s": None if e0s is None else {str(z): float(e0s[z]) for z in elements if z in e0s},
        "n_basis": int(basis.meta["len_basis"]),
        "n_train": n_train,
        "timings": {k: float(v) for k, v in result.timings.items()},
        "hyperparameters": {
            k: float(np.asarray(v).reshape(-1)[0]) for k, v in result.theta._asdict().items() if np.size(v) == 1
        },
        "log_evidence": float(result.map.log_evidence) if result.map.log_evidence is not None else None,
        "hyperparameters_at_bound": hyperparameters_at_bound(result.theta),
    }


def hyperparameters_at_bound(theta) -> list[str]:
    """Names of the linear model's scales (the prior's sigma_c, the noise sigma_E, sigma_F,
    sigma_V) that ended on a bound of ace-jax's evidence maximisation, logged as a warning:
    there the evidence asked for more than the box allows (log_sigma_c at its top: a prior
    stronger than the data want). The kernel hyperparameters, fixed in a linear fit, are skipped."""
    from ace_jax.fit.pipeline.mapfit import LBFGS_HI, LBFGS_LO

    at = []
    for name, value, lo, hi in zip(theta._fields, theta, LBFGS_LO, LBFGS_HI):
        if (
            name.startswith("log_sigma_")
            and np.size(value) == 1
            and min(abs(float(np.asarray(value).reshape(-1)[0]) - b) for b in (lo, hi)) < 1e-6
        ):
            at.append(name)
    if at:
        log.warning("ACE fit: %s ended on a bound of the evidence maximisation", ", ".join(at))
    return at


def _uncertainty(arrays: Mapping, sizes: Sequence[int], names: Sequence[str]) -> dict:
    """Per test set, for energy (per atom, meV/atom) and forces (per component, meV/A): the
    RMSE, the fitted noise (forces: sigma_F; energy: sigma_E / sqrt(n) per atom, the median
    over the set's structures of n atoms), and two standard deviations with their medians
    and the share of errors within one of them:

    * posterior: the spread of the prediction over the posterior of the coefficients
      (ace-jax's E_var, F_var), what distinguishes one structure from another;
    * predictive: the posterior's variance plus the noise the evidence fit gave the labels
      (ace-jax's noise_E, noise_F, for a structure of n atoms sigma_E^2 n and sigma_F^2).
      A calibrated predictive std holds about 68 % of the errors; a test set far from the
      training data shows fewer.
    """
    nat = np.asarray(arrays["nat"], int)
    e_err = np.asarray(arrays["E_mean"]) - np.asarray(arrays["E"])
    e_var, e_noise = np.asarray(arrays["E_var"]), np.asarray(arrays["noise_E"])
    f_err = np.asarray(arrays["F_mean"]) - np.asarray(arrays["F"])
    f_var, f_noise = np.asarray(arrays["F_var"]), np.asarray(arrays["noise_F"])
    if f_noise.ndim == 1:  # one variance per atom, the same for its three components
        f_noise = f_noise[:, None]

    def stats(err, posterior_std, predictive_std, noise_std) -> dict:
        return {
            "rmse": 1e3 * float(np.sqrt(np.mean(err**2))),
            "noise": 1e3 * float(np.median(noise_std)),
            "posterior_std_median": 1e3 * float(np.median(posterior_std)),
            "posterior_within_1std": float(np.mean(np.abs(err) <= posterior_std)),
            "predictive_std_median": 1e3 * float(np.median(predictive_std)),
            "predictive_within_1std": float(np.mean(np.abs(err) <= predictive_std)),
        }

    out, s0, a0 = {}, 0, 0
    for name, n in zip(names, sizes):
        sl, a1 = slice(s0, s0 + n), a0 + int(nat[s0 : s0 + n].sum())
        per_atom = nat[sl]
        e_post = np.sqrt(e_var[sl]) / per_atom
        e_pred = np.sqrt(e_var[sl] + e_noise[sl]) / per_atom
        f_post = np.sqrt(f_var[a0:a1]) * np.ones_like(f_err[a0:a1])
        f_pred = np.sqrt(f_var[a0:a1] + f_noise[a0:a1]) * np.ones_like(f_err[a0:a1])
        energy = stats(e_err[sl] / per_atom, e_post, e_pred, np.sqrt(e_noise[sl]) / per_atom)
        forces = stats(f_err[a0:a1], f_post, f_pred, np.sqrt(f_noise[a0:a1]) * np.ones_like(f_err[a0:a1]))
        out[name] = {f"energy_{k}": v for k, v in energy.items()} | {f"forces_{k}": v for k, v in forces.items()}
        out[name]["energy_posterior_std_per_structure"] = (1e3 * e_post).tolist()
        s0, a0 = s0 + n, a1
    return out


def read_student(folder) -> dict:
    """student.json of an ACE student folder."""
    path = Path(folder) / STUDENT_FILE
    record = json.loads(path.read_text())
    if record.get("kind") != KIND:
        raise ValueError(f"{path}: kind {record.get('kind')!r}, not an ACE student")
    return record


def ace_calculator(folder, backend: str = "compiled", **kwargs):
    """An ASE calculator for an ACE student folder.

    backend "compiled" (default): jaxtl's `CompiledACECalculator`, one jitted program per
    padded layout, the same energies and forces as ace-jax's to float64 round-off (keyword
    arguments: `radial_table`, `headroom`); a model form it does not cover falls back to
    ace-jax's, with a warning. backend "ace-jax": ace-jax's own `ACECalculator` (keyword
    arguments go to it), with the student's elements checked first so an unknown element is
    named, not mis-evaluated.
    """
    require_ace_jax()
    _enable_x64()
    record = read_student(folder)
    model_file = Path(folder) / record.get("model_file", MODEL_FILE)
    if backend not in ("compiled", "ace-jax"):
        raise ValueError(f"ACE calculator backend must be 'compiled' or 'ace-jax', got {backend!r}")
    if backend == "compiled":
        from jaxtl.distill.ace_calculator import CompiledACECalculator

        try:
            return CompiledACECalculator(model_file, source=f"ACE student {folder}", **kwargs)
        except NotImplementedError as err:
            log.warning("%s: %s; using ace-jax's calculator", folder, err)
            kwargs = {}
    from ace_jax.calc.point import ACECalculator

    elements = tuple(int(z) for z in record["elements"])

    class ACEStudentCalculator(ACECalculator):
        """ace-jax's calculator for one student; refuses elements outside its basis."""

        def calculate(self, atoms=None, properties=("energy",), system_changes=None):
            check_student_elements(
                [atoms if atoms is not None else self.atoms],
                elements,
                f"ACE student {folder}: structure {(atoms or self.atoms).get_chemical_formula()}",
            )
            if system_changes is None:
                from ase.calculators.calculator import all_changes

                system_changes = all_changes
            super().calculate(atoms, properties, system_changes)

    return ACEStudentCalculator(str(model_file), **kwargs)
