"""Structures to label: Langevin MD with the teacher from starting structures, every k-th
frame kept, optionally with rattled copies."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import ase
import numpy as np

from jaxtl.api import LoadedModel
from jaxtl.md.simulate import MDConfig, MDEngine, drop_labels, fixed_atoms

log = logging.getLogger("jaxtl.distill")


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How structures are sampled with the teacher.

    Attributes:
        md_steps: Langevin steps per starting structure (0: no MD, the starts only).
        temperature: in K.
        dt: time step in fs.
        friction: Langevin friction in 1/fs.
        keep_every: keep every k-th MD frame (the start, frame 0, is kept too).
        n_rattled: rattled copies added per kept frame.
        rattle_std: standard deviation of the rattle in A (fixed atoms are not moved).
        skin, check_every, min_distance: MD settings (see `MDConfig`).
        seed: seed of the MD (start i uses seed + i) and the rattles.
    """

    md_steps: int = 1000
    temperature: float = 300.0
    dt: float = 1.0
    friction: float = 0.01
    keep_every: int = 50
    n_rattled: int = 0
    rattle_std: float = 0.05
    skin: float | None = None
    check_every: int = 25
    min_distance: float = 0.5
    seed: int = 0

    def md_config(self, index: int) -> MDConfig:
        return MDConfig(
            steps=self.md_steps,
            dt=self.dt,
            ensemble="langevin",
            temperature=self.temperature,
            friction=self.friction,
            skin=self.skin,
            check_every=self.check_every,
            save_every=self.keep_every,
            min_distance=self.min_distance,
            seed=self.seed + index,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def rattled_copies(
    atoms: ase.Atoms, n: int, std: float, rng: np.random.Generator, min_distance: float = 0.5, max_tries: int = 20
) -> list[ase.Atoms]:
    """`n` copies with Gaussian displacements (A) of the mobile atoms; copies with atoms
    closer than `min_distance` are redrawn."""
    mobile = ~fixed_atoms(atoms)
    out = []
    for _ in range(n):
        for _ in range(max_tries):
            copy = atoms.copy()
            copy.positions[mobile] += rng.normal(0.0, std, (int(mobile.sum()), 3))
            if len(copy) < 2 or _min_distance(copy) >= min_distance:
                break
        copy.info["rattled"] = True
        out.append(copy)
    return out


def _keep_calculator_labels(start: ase.Atoms, frame0: ase.Atoms) -> None:
    """Labels held by the start's calculator (extxyz `energy=`, `forces`) onto frame 0 as REF_*."""
    results = getattr(start.calc, "results", None) or {}
    if "energy" in results and "REF_energy" not in frame0.info:
        frame0.info["REF_energy"] = float(results["energy"])
    if "forces" in results and "REF_forces" not in frame0.arrays:
        frame0.arrays["REF_forces"] = np.array(results["forces"])


def _min_distance(atoms: ase.Atoms) -> float:
    from jaxtl.graph.neighbours import neighbour_list

    s, r, shifts = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, 2.0)
    if len(s) == 0:
        return np.inf
    return float(np.linalg.norm(atoms.positions[r] - atoms.positions[s] + shifts @ atoms.cell.array, axis=1).min())


def sample_structures(
    teacher: LoadedModel,
    starts: Sequence[ase.Atoms],
    config: SamplingConfig = SamplingConfig(),
    progress: bool = True,
    engine: MDEngine | None = None,
) -> tuple[list[ase.Atoms], dict]:
    """Langevin MD with the teacher from each start; returns (structures, report).

    The MD energies are dropped (labelling redoes them in batches, with stress); labels
    a start carried (DFT, say) stay on its unmoved frame 0 only, and labelling keeps them
    as DFT_* keys. An MD run that explodes keeps its frames so far and is
    reported under `report["md_errors"]`; sampling carries on with the next start.
    """
    engine = engine or MDEngine(teacher)
    rng = np.random.default_rng(config.seed)
    bar = None
    if progress and config.md_steps:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=config.md_steps * len(starts), unit="step", desc="sampling MD", disable=None
        )  # None: only on a terminal
    structures, errors, steps, wall = [], [], 0, 0.0
    for i, start in enumerate(starts):
        if config.md_steps:
            result = engine.run(start, config.md_config(i), progress=bar if bar is not None else False)
            frames = result.frames
            steps += result.steps_done
            wall += result.wall_s
            if result.error:
                errors.append(f"start {i}: {result.error}")
        else:
            frames = [start.copy()]
        _keep_calculator_labels(start, frames[0])
        for frame in frames:
            frame.calc = None
            frame.info["sample_start"] = i
            structures.append(frame)
            for copy in rattled_copies(frame, config.n_rattled, config.rattle_std, rng, config.min_distance):
                structures.append(drop_labels(copy))
    if bar is not None:
        bar.close()
    report = {
        "n_starts": len(starts),
        "n_structures": len(structures),
        "md_steps": steps,
        "md_steps_per_s": steps / wall if wall else None,
        "md_errors": errors,
        "md_compilations": engine.n_compilations,
        "settings": config.to_dict(),
    }
    log.info("sampled %d structures from %d starts (%d MD steps)", len(structures), len(starts), steps)
    return structures, report


TRAIN = "train"
TEST_INDEPENDENT = "test_independent_runs"
TEST_HELD_OUT_START = "test_held_out_starts"


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """Training trajectories and the independent ones the students are judged on.

    Training runs: one Langevin run per starting structure (except the held-out ones) with
    `train`'s settings, seed `train.seed + i` for start i. Test runs never share a trajectory
    with training: from every training start, one run per temperature in `test_temperatures`
    with seed `test_seed + i` (frame 0, the shared start, is dropped); and from every
    held-out start, runs at the training temperature and at each test temperature, so that
    starting geometry (a facet, a conformer) is never seen in training. Test frames are
    not rattled.

    Attributes:
        train: settings of the training runs (MD steps, temperature, stride, rattles, seed).
        test_temperatures: temperatures of the independent runs in K (empty: the training
            temperature).
        test_md_steps: steps per test run (None: `train.md_steps`).
        test_seed: first seed of the test runs; must differ from the training seeds.
        held_out_starts: indices of starting structures used only for test runs.
    """

    train: SamplingConfig = SamplingConfig()
    test_temperatures: tuple = ()
    test_md_steps: int | None = None
    test_seed: int = 1000
    held_out_starts: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "test_temperatures", tuple(float(t) for t in self.test_temperatures))
        object.__setattr__(self, "held_out_starts", tuple(int(i) for i in self.held_out_starts))
        if self.train.md_steps < 1:
            raise ValueError("a sampling plan needs MD (train.md_steps >= 1)")

    def trajectories(self, n_starts: int) -> list[dict]:
        """One dict per MD run: start, split, temperature in K, seed, md_steps."""
        held = sorted({i % n_starts for i in self.held_out_starts}) if n_starts else []
        if len(held) >= n_starts:
            raise ValueError(
                f"held_out_starts {list(self.held_out_starts)} leave none of the {n_starts} starts for training"
            )
        temperatures = self.test_temperatures or (self.train.temperature,)
        steps = self.train.md_steps if self.test_md_steps is None else self.test_md_steps
        runs = []
        for i in range(n_starts):
            if i in held:
                continue
            runs.append(
                dict(
                    start=i,
                    split=TRAIN,
                    temperature=self.train.temperature,
                    seed=self.train.seed + i,
                    md_steps=self.train.md_steps,
                )
            )
        for i in range(n_starts):
            test_temps = temperatures if i not in held else (self.train.temperature, *temperatures)
            for k, t in enumerate(dict.fromkeys(test_temps)):
                runs.append(
                    dict(
                        start=i,
                        split=TEST_HELD_OUT_START if i in held else TEST_INDEPENDENT,
                        temperature=t,
                        seed=self.test_seed + 100 * k + i,
                        md_steps=steps,
                    )
                )
        train_seeds = {r["seed"] for r in runs if r["split"] == TRAIN}
        clash = [r for r in runs if r["split"] != TRAIN and r["seed"] in train_seeds]
        if clash:
            raise ValueError(
                f"test seeds {sorted({r['seed'] for r in clash})} repeat training seeds: "
                "choose test_seed beyond train.seed + number of starts"
            )
        return runs

    def to_dict(self) -> dict:
        return {
            "train": self.train.to_dict(),
            "test_temperatures": list(self.test_temperatures),
            "test_md_steps": self.test_md_steps,
            "test_seed": self.test_seed,
            "held_out_starts": list(self.held_out_starts),
        }


def sample_plan(
    teacher: LoadedModel,
    starts: Sequence[ase.Atoms],
    plan: SamplingPlan,
    progress: bool = True,
    engine: MDEngine | None = None,
) -> tuple[list[ase.Atoms], dict]:
    """Run every trajectory of `plan`; returns (structures, sampling record).

    Each structure carries info `split` (train, test_independent_runs,
    test_held_out_starts), `trajectory` (index into the record's runs), `sample_start`,
    `md_temperature` and `md_seed`. The record lists the starts (formula, source),
    the plan, every run (start, split, temperature, seed, steps, frames kept, MD error)
    and the counts per split: enough to regenerate the set.
    """
    engine = engine or MDEngine(teacher)
    runs = plan.trajectories(len(starts))
    structures: list[ase.Atoms] = []
    for t, run in enumerate(runs):
        train = run["split"] == TRAIN
        config = dataclasses.replace(
            plan.train,
            md_steps=run["md_steps"],
            temperature=run["temperature"],
            seed=run["seed"],
            n_rattled=plan.train.n_rattled if train else 0,
        )
        frames, report = sample_structures(teacher, [starts[run["start"]]], config, progress=progress, engine=engine)
        if not train:  # frame 0 is the start itself, which a training run from that start also holds
            frames = [f for f in frames if f.info.get("md_step", 0) > 0 or f.info.get("rattled")]
        for f in frames:
            f.info.update(
                split=run["split"],
                trajectory=t,
                sample_start=run["start"],
                md_temperature=run["temperature"],
                md_seed=run["seed"],
            )
        structures.extend(frames)
        run.update(
            n_structures=len(frames),
            md_steps_done=report["md_steps"],
            md_error=report["md_errors"][0] if report["md_errors"] else None,
        )
    record = {
        "starts": [
            {
                "index": i,
                "formula": a.get_chemical_formula(),
                "n_atoms": len(a),
                "source": str(a.info.get("source", f"start {i}")),
            }
            for i, a in enumerate(starts)
        ],
        "plan": plan.to_dict(),
        "runs": runs,
        "counts": {
            split: sum(r["n_structures"] for r in runs if r["split"] == split)
            for split in (TRAIN, TEST_INDEPENDENT, TEST_HELD_OUT_START)
        },
        "md_steps": sum(r["md_steps_done"] for r in runs),
        "md_errors": [f"run {t} (start {r['start']}): {r['md_error']}" for t, r in enumerate(runs) if r["md_error"]],
        "md_compilations": engine.n_compilations,
    }
    return structures, record
