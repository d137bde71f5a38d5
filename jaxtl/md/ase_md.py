"""The same MD through ASE's integrators and `MACECalculator` (a reference for `MDEngine`).

One model call per step from Python, so it is slower than the jit-compiled chunks; it
takes the same `MDConfig` and returns the same `MDResult`. Langevin here is ASE's
`Langevin` (a different splitting than BAOAB: trajectories agree statistically only).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import ase
import numpy as np
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator

from jaxtl.md.simulate import MDConfig, MDResult, drop_labels, fixed_atoms, initial_velocities


def run_ase_md(
    model,
    atoms: ase.Atoms,
    config: MDConfig = MDConfig(),
    progress: bool = False,
    on_frames: Callable[[list], None] | None = None,
    start_step: int = 0,
) -> MDResult:
    """MD with ASE's VelocityVerlet (nve) or Langevin; `model` a folder, a LoadedModel or any
    ASE calculator (an ACE student from `jaxtl.load_calculator`, say).

    `on_frames` and `start_step` as in `MDEngine.run` (each saved frame is handed over at once).

    A non-finite energy or forces, or atoms closer than `config.min_distance`, stops the
    run with a message naming the step; frames so far are kept. `config.skin` and
    `check_every` do not apply (the calculator rebuilds its neighbour list every call).
    """
    from ase.calculators.calculator import Calculator

    from jaxtl.calculator import MACECalculator

    start_time = time.perf_counter()
    calc = model if isinstance(model, Calculator) else MACECalculator(model)
    compilations = getattr(calc, "n_compilations", 0)
    atoms = atoms.copy()
    fixed = fixed_atoms(atoms)
    atoms.set_velocities(initial_velocities(atoms, config.temperature, fixed, np.random.default_rng(config.seed)))
    atoms.calc = calc
    dyn = _dynamics(atoms, config, start_step)
    recorder = _Recorder(atoms, config, on_frames, start_step)
    recorder.record(start_step)
    done, error = _advance(dyn, atoms, config, recorder, start_step, progress)
    ekin = np.array(recorder.ekin)
    dof = max(3 * int((~fixed).sum()), 1)
    return MDResult(
        frames=recorder.frames,
        time=(start_step + np.arange(len(recorder.epot))) * config.dt,
        potential_energy=np.array(recorder.epot),
        kinetic_energy=ekin,
        temperature=2 * ekin / (dof * units.kB),
        steps_done=done,
        error=error,
        n_atoms=len(atoms),
        n_compilations=getattr(calc, "n_compilations", 0) - compilations,
        wall_s=time.perf_counter() - start_time,
    )


def _dynamics(atoms: ase.Atoms, config: MDConfig, start_step: int):
    """ASE's VelocityVerlet (nve) or Langevin on `atoms`; a resumed Langevin run draws its
    noise from (seed, start_step), so it does not repeat the first run's."""
    from ase.md.langevin import Langevin
    from ase.md.verlet import VelocityVerlet

    dt = config.dt * units.fs
    if config.ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    return Langevin(
        atoms,
        timestep=dt,
        temperature_K=config.temperature,
        friction=config.friction / units.fs,
        fixcm=False,
        rng=np.random.default_rng([config.seed, start_step] if start_step else config.seed),
    )


@dataclasses.dataclass
class _Recorder:
    """Energies of every step and the frames of every `config.save_every`-th, handed to
    `on_frames` as they are taken (all but the resumed run's first, which was handed over before)."""

    atoms: ase.Atoms
    config: MDConfig
    on_frames: Callable[[list], None] | None
    start_step: int
    epot: list = dataclasses.field(default_factory=list)
    ekin: list = dataclasses.field(default_factory=list)
    frames: list = dataclasses.field(default_factory=list)

    def record(self, step: int) -> None:
        atoms = self.atoms
        self.epot.append(atoms.get_potential_energy())
        self.ekin.append(atoms.get_kinetic_energy())
        if step % self.config.save_every == 0:
            a = atoms.copy()
            if step:
                drop_labels(a)
            a.calc = SinglePointCalculator(a, energy=self.epot[-1], forces=atoms.get_forces())
            a.info.update(md_step=step, time_fs=step * self.config.dt)
            self.frames.append(a)
            if self.on_frames is not None and (step != self.start_step or not self.start_step):
                self.on_frames([a])


def _advance(
    dyn, atoms: ase.Atoms, config: MDConfig, recorder: _Recorder, start_step: int, progress: bool
) -> tuple[int, str | None]:
    """Steps start_step+1 .. config.steps, each recorded: (steps done, the error that stopped
    the run or None)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=max(config.steps - start_step, 0), unit="step", desc="ASE MD", disable=None
        )  # None: only on a terminal
    done, error = 0, None
    for step in range(start_step + 1, config.steps + 1):
        try:
            dyn.run(1)
        except FloatingPointError:
            error = f"MD stopped at step {step}: energy or forces became NaN/inf (the run exploded)"
            break
        d = atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)] if len(atoms) > 1 else np.array([np.inf])
        if d.min() < config.min_distance:
            error = f"MD stopped at step {step}: two atoms came {d.min():.3f} A apart (< {config.min_distance} A)"
            break
        recorder.record(step)
        done = step - start_step
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return done, error
