"""`jaxtl demo`: the frozen-transfer-learning workflow on data jaxtl makes itself.

A demonstration of the mechanics, not a physics result:

1. a small multi-element "foundation" MACE is trained on fcc Cu/Ni/Ag/Au cells
   labelled with ASE's EMT potential;
2. the target is a *different reference*: Cu-Ni-Au cells with vacancies, hotter
   and denser, labelled with EMT plus a Morse pair term (another "functional")
   and shifted per-element reference energies (another "code"): E0s are refitted;
3. the foundation is fine-tuned with frozen layers (mace-torch's --freeze 5 and
   --freeze 6) on growing fractions of the target pool, against the same
   architecture trained from scratch on the same structures; all are tested on
   the same held-out target structures;
4. the best fine-tuned model at the largest fraction is distilled: Langevin MD with it
   as the potential samples target structures, it labels them, and a one-layer
   student is trained on its labels; the student's error against the teacher and
   its speed-up (energy+forces, side by side) are reported;
5. a table is printed and a plot saved.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

DEMO_MODEL = dict(
    r_max=4.5,
    num_bessel=6,
    hidden_irreps="16x0e",
    max_ell=2,
    correlation=(2, 2),
    radial_MLP=(32, 32),
    MLP_irreps="8x0e",
)
DEMO_STUDENT = dict(
    num_interactions=1,
    hidden_irreps="8x0e",
    max_ell=1,
    correlation=2,
    radial_MLP=(16, 16),
    MLP_irreps="8x0e",
    num_bessel=6,
)
E0_SHIFT = {"Cu": -1.7, "Ni": -2.3, "Au": -0.9}  # eV per atom: the target's own reference energies


def _fcc_cell(rng, symbols, a, repeat, rattle, vacancies=0):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    atoms.set_chemical_symbols(rng.choice(symbols, len(atoms)))
    for _ in range(vacancies):
        del atoms[int(rng.integers(len(atoms)))]
    strain = np.eye(3) + rng.normal(0, 0.02, (3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.positions += rng.normal(0, rattle, atoms.positions.shape)
    return atoms


def _label(atoms, calc, shift=None):
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    if shift:
        energy += sum(shift[s] for s in atoms.get_chemical_symbols())
    atoms.calc = None
    atoms.info["REF_energy"] = float(energy)
    atoms.arrays["REF_forces"] = forces
    atoms.info["REF_stress"] = stress
    return atoms


def make_data(out: Path, n_foundation: int = 240, n_target: int = 160, n_test: int = 60, seed: int = 0) -> dict:
    """Write foundation.xyz, target_pool.xyz and target_test.xyz; return their paths."""
    import ase.io
    from ase.calculators.emt import EMT
    from ase.calculators.mixing import SumCalculator
    from ase.calculators.morse import MorsePotential

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    foundation = []
    for i in range(n_foundation):
        symbols = [["Cu"], ["Ni"], ["Ag"], ["Au"], ["Cu", "Ni"], ["Cu", "Au"], ["Ag", "Au"]][i % 7]
        foundation.append(_label(_fcc_cell(rng, symbols, rng.uniform(3.55, 4.1), (1, 1, 2), 0.08), EMT()))
    target_calc = SumCalculator([EMT(), MorsePotential(epsilon=0.05, r0=2.6, rho0=4.0, rcut1=3.5, rcut2=4.4)])
    target = []
    for _ in range(n_target + n_test):
        atoms = _fcc_cell(
            rng, ["Cu", "Ni", "Au"], rng.uniform(3.5, 3.8), (2, 1, 1), 0.15, vacancies=int(rng.integers(0, 2))
        )
        target.append(_label(atoms, target_calc, E0_SHIFT))
    paths = {name: out / f"{name}.xyz" for name in ("foundation", "target_pool", "target_test")}
    ase.io.write(paths["foundation"], foundation, format="extxyz")
    ase.io.write(paths["target_pool"], target[:n_target], format="extxyz")
    ase.io.write(paths["target_test"], target[n_target:], format="extxyz")
    return paths


def _train_config(epochs: int, seed: int = 0):
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    return TrainConfig(
        max_num_epochs=epochs,
        seed=seed,
        progress_bar=False,
        plot=False,
        optimizer=OptimizerConfig(lr=0.01, scheduler="cosine", decay_epochs=epochs, min_lr_factor=0.05),
    )


def _epochs_for(n_structures: int, batch_size: int, steps: int) -> int:
    return max(5, int(np.ceil(steps / max(1, np.ceil(n_structures / batch_size)))))


def run_demo(
    out: str | Path = "runs/demo",
    fractions=(0.05, 0.2, 1.0),
    steps: int = 250,
    foundation_epochs: int = 30,
    log=print,
    fast: bool = False,
) -> dict:
    """Run the whole demo; returns the results table (also written to OUT/results.json)."""
    from jaxtl.graph.io import read_configurations

    out = Path(out)
    t_start = time.time()
    sizes = dict(n_foundation=60, n_target=40, n_test=20) if fast else {}
    paths = make_data(out / "data", **sizes)
    n_pool = len(read_configurations(paths["target_pool"]))
    log(f"[demo] data in {out / 'data'} ({time.time() - t_start:.0f} s)")
    _train_foundation(out, paths, foundation_epochs, log)

    rows = []
    for fraction in fractions:
        rows += _compare_at(out, paths, fraction, n_pool, steps, log)
    distilled = _distil(out, paths, rows, fast, log)
    _report(out, rows, distilled, t_start, log)
    return {"rows": rows, "distillation": distilled, "wall_s": time.time() - t_start}


def _train_foundation(out: Path, paths: dict, epochs: int, log) -> None:
    """OUT/foundation: DEMO_MODEL trained from scratch on the foundation structures."""
    from jaxtl.train.data import DataConfig
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    t0 = time.time()
    train_from_scratch(
        ScratchConfig(
            DataConfig(train_file=str(paths["foundation"]), batch_size=10, valid_fraction=0.1),
            DEMO_MODEL,
            _train_config(epochs),
        ),
        out / "foundation",
    )
    log(f"[demo] foundation trained on Cu/Ni/Ag/Au EMT data ({time.time() - t0:.0f} s)")


def _compare_at(out: Path, paths: dict, fraction: float, n_pool: int, steps: int, log) -> list[dict]:
    """Scratch, freeze 5 and freeze 6 trained on `fraction` of the target pool for about
    `steps` steps, each tested on the held-out target structures: a table row each."""
    batch_size = 5
    n_train = max(2, int(round(fraction * n_pool * 0.9)))
    epochs = _epochs_for(n_train, batch_size, steps)
    rows = []
    for name, fn in _runs(out, paths, fraction, batch_size, epochs).items():
        t0 = time.time()
        metrics = fn(out / f"{name.replace(' ', '')}_{int(round(fraction * 100))}pct")
        test = metrics["test"]["all"]
        rows.append(
            {
                "fraction": fraction,
                "n_train": n_train,
                "model": name,
                "energy_rmse": test["energy_rmse"],
                "forces_rmse": test["forces_rmse"],
                "wall_s": time.time() - t0,
            }
        )
        log(
            f"[demo] {name:9s} {fraction:5.0%}: E {test['energy_rmse']:7.1f} meV/atom, "
            f"F {test['forces_rmse']:7.1f} meV/A ({time.time() - t0:.0f} s)"
        )
    return rows


def _runs(out: Path, paths: dict, fraction: float, batch_size: int, epochs: int) -> dict:
    """{"scratch", "freeze 5", "freeze 6"} -> run folder -> the run's metrics on every split."""
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
    from jaxtl.train.data import DataConfig
    from jaxtl.train.run import ScratchConfig, train_from_scratch

    runs = {
        "scratch": lambda d: (
            train_from_scratch(
                ScratchConfig(
                    DataConfig(
                        train_file=str(paths["target_pool"]),
                        test_file=str(paths["target_test"]),
                        batch_size=batch_size,
                        train_fraction=fraction,
                    ),
                    DEMO_MODEL,
                    _train_config(epochs),
                ),
                d,
            ).metrics
        ),
    }
    for freeze in (5, 6):
        config = FinetuneConfig(
            FoundationConfig(str(out / "foundation" / "model")),
            DataConfig(
                train_file=str(paths["target_pool"]),
                test_file=str(paths["target_test"]),
                batch_size=batch_size,
                valid_batch_size=batch_size,
                train_fraction=fraction,
                seed=0,
            ),
            StrategyConfig(freeze=freeze),
            _train_config(epochs),
            e0s="average",
        )
        runs[f"freeze {freeze}"] = lambda d, config=config: finetune(config, d, log=lambda *_: None).train.metrics
    return runs


def _report(out: Path, rows: list[dict], distilled: dict, t_start: float, log) -> None:
    """The table and the distillation line on screen, OUT/results.json and OUT/learning_curves.png."""
    from jaxtl.train.plot import plot_data_efficiency

    table = format_table(rows)
    log(table)
    log(
        f"[demo] student distilled from '{distilled['teacher']}': forces RMSE vs teacher "
        f"{distilled['forces_rmse']:.1f} meV/A, energy {distilled['energy_rmse']:.1f} meV/atom; "
        f"{distilled['speedup']:.1f}x faster than its teacher ({distilled['n_labelled']} structures labelled)"
    )
    (out / "results.json").write_text(json.dumps({"rows": rows, "distillation": distilled}, indent=2))
    plot_data_efficiency(
        rows, out / "learning_curves.png", "model", "jaxtl demo (EMT data): frozen fine-tuning vs scratch"
    )
    log(
        f"[demo] total {time.time() - t_start:.0f} s; table in {out / 'results.json'}, plot in "
        f"{out / 'learning_curves.png'}. A demonstration of the mechanics on EMT data, not a physics result."
    )


def _distil(out: Path, paths: dict, rows: list[dict], fast: bool, log) -> dict:
    """Distil the best fine-tuned model of the largest fraction into DEMO_STUDENT."""
    import ase.io

    from jaxtl.distill import (
        DistillConfig,
        DistillDataConfig,
        MACEStudentConfig,
        SamplingConfig,
        SpeedConfig,
        TeacherConfig,
        distill,
    )

    largest = max(r["fraction"] for r in rows)
    best = min(
        (r for r in rows if r["fraction"] == largest and r["model"] != "scratch"), key=lambda r: r["forces_rmse"]
    )
    teacher = out / f"{best['model'].replace(' ', '')}_{int(round(largest * 100))}pct" / "model"
    starts = out / "distill_starts.xyz"
    ase.io.write(starts, ase.io.read(paths["target_pool"], index=":4" if fast else ":8"), format="extxyz")
    sampling = SamplingConfig(
        md_steps=20 if fast else 150,
        temperature=600,
        dt=2.0,
        friction=0.02,
        keep_every=5 if fast else 10,
        n_rattled=1,
        rattle_std=0.05,
        seed=0,
    )
    config = DistillConfig(
        TeacherConfig(str(teacher)),
        DistillDataConfig(starts=(str(starts),), seed=0),
        sampling,
        MACEStudentConfig(model=DEMO_STUDENT, train=_train_config(3 if fast else 40)),
        SpeedConfig(repeats=3 if fast else 10),
    )
    t0 = time.time()
    report = distill(config, out / "student", progress=False)
    log(f"[demo] distillation ({time.time() - t0:.0f} s)")
    return {
        "teacher": f"{best['model']} at {largest:.0%}",
        "forces_rmse": report["student_vs_teacher"]["forces_rmse"],
        "energy_rmse": report["student_vs_teacher"]["energy_rmse"],
        "speedup": report["speed"]["speedup"],
        "n_labelled": report["n_structures"]["labelled"],
        "wall_s": time.time() - t0,
    }


def format_table(rows) -> str:
    lines = [f"{'fraction':>8s} {'n_train':>7s} {'model':>10s} {'E RMSE meV/atom':>16s} {'F RMSE meV/A':>13s}"]
    for r in rows:
        lines.append(
            f"{r['fraction']:8.0%} {r['n_train']:7d} {r['model']:>10s} {r['energy_rmse']:16.1f} "
            f"{r['forces_rmse']:13.1f}"
        )
    return "\n".join(lines)
