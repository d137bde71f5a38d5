"""Molecular dynamics with a jaxtl model: jit-compiled chunks, host check-ins between them.

    engine = MDEngine(jaxtl.load_model("model_dir", dtype="float64"))
    result = engine.run(atoms, MDConfig(steps=1000, dt=1.0, ensemble="langevin", temperature=300))
    result.frames            # every `save_every`-th frame, with energy, forces and velocities
    result.drift()           # eV/atom/ps of the total energy (NVE)

The neighbour list holds every pair closer than r_max + skin; each step evaluates the model
on the pairs closer than r_max at its positions, cut out of it under jit (`jaxtl.md.exact_graph`).
When a compiled chunk of up to `check_every` steps stops because an atom has moved skin/2 from
where the list was built, the host rebuilds the list; when the exact pairs outgrow their
capacities, the host grows them. Capacities never shrink, so a run compiles a handful of times;
the skin is chosen from the system unless given (`jaxtl.md.skin`). A run that explodes
(non-finite energy or forces, atoms closer than `min_distance`) stops with a message naming the
step and keeps the frames so far.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable

import ase
import jax
import jax.numpy as jnp
import numpy as np
from ase import units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from jaxtl.api import LoadedModel, load_model
from jaxtl.graph.batching import (
    Budget,
    graph_from_configuration,
    item_size,
    max_in_degree,
    neighbour_width,
    pad_batch,
    round_capacity,
)
from jaxtl.graph.graph import Graph
from jaxtl.graph.io import Configuration, DataKeys, check_elements, configuration_from_atoms
from jaxtl.graph.labels import Batch
from jaxtl.md.chunk import (
    LIMIT,
    NOT_FINITE,
    OK,
    OVERFLOW,
    REBUILD,
    TOO_CLOSE,
    ChunkParams,
    make_chunk,
    make_initial_forces,
)
from jaxtl.md.exact_graph import ExactBudget, exact_budget, host_counts
from jaxtl.md.integrators import MDState
from jaxtl.md.skin import choose_skin

log = logging.getLogger("jaxtl.md")

# The engine's graph capacities, of the skin list and of the exact graph the model sees. The
# model's cost follows the padded edges and neighbour width, not the real ones, and one MD run
# keeps one size, so a fine grid (at most ~6 % padding) pays. A run recompiles only when a
# rebuilt list, or the exact pairs of a step, outgrow the capacities, which then grow with
# headroom (the counts drift as the atoms move) and never shrink. The exact counts change
# every step (pairs cross r_max), the skin list's only at a rebuild.
CAPACITY_STEPS = 16  # capacities per doubling (`round_capacity`)
EDGE_HEADROOM = 0.02
NEIGHBOUR_HEADROOM = 0.125
GROWN_HEADROOM = (0.125, 0.25)  # (edges, neighbour width) when a run outgrows its capacities
# The exact graph's capacities set the model's cost every step (its edges more than its
# neighbour width), so they start closer to the counts, on a finer grid: in thermal MD of a
# few hundred atoms the exact counts wander by ~1-2 % (edges) and one neighbour (in-degree).
# A step that outgrows them shows the counts drifting (the system heating or compressing),
# and they grow by GROWN_HEADROOM, so that a run recompiles for it once or twice.
EXACT_STEPS = 64
EXACT_HEADROOM = (0.03, 0.0625)  # (edges, neighbour width) of the first capacities


@dataclasses.dataclass(frozen=True)
class MDConfig:
    """Settings of an MD run.

    Attributes:
        steps: number of steps.
        dt: time step in fs.
        ensemble: "nve" (velocity Verlet) or "langevin" (NVT, BAOAB).
        temperature: in K; the Langevin target, and the temperature of the initial
            Maxwell-Boltzmann velocities when the atoms have none. None: start at rest
            (or from the atoms' own velocities).
        friction: Langevin friction in 1/fs.
        skin: neighbour-list skin in A (the list holds pairs closer than r_max + skin and
            is rebuilt once an atom has moved skin/2 from where it was built). None: chosen
            from the start velocities, the temperature, the masses and `dt` so that the
            fastest atom needs about 20 steps to use up half of it, within 0.3-1.5 A
            (`jaxtl.md.skin`): the model sees only the pairs closer than r_max either way.
        check_every: steps per jit-compiled chunk; frames are handed over and progress
            reported between chunks (a chunk also ends early when the list needs rebuilding).
        save_every: keep every k-th frame (frame 0 is always kept).
        min_distance: stop when two atoms come closer than this (A).
        seed: seed of the initial velocities and the Langevin noise.
    """

    steps: int = 1000
    dt: float = 1.0
    ensemble: str = "langevin"
    temperature: float | None = 300.0
    friction: float = 0.01
    skin: float | None = None
    check_every: int = 20
    save_every: int = 10
    min_distance: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if self.ensemble not in ("nve", "langevin"):
            raise ValueError(f"ensemble must be 'nve' or 'langevin', got {self.ensemble!r}")
        if self.ensemble == "langevin" and self.temperature is None:
            raise ValueError("Langevin dynamics needs a temperature (K)")
        if (
            self.dt <= 0
            or (self.skin is not None and self.skin < 0)
            or self.check_every < 1
            or self.save_every < 1
            or self.steps < 0
        ):
            raise ValueError(f"invalid MD settings: {self}")


@dataclasses.dataclass
class MDResult:
    """What an MD run produced.

    Attributes:
        frames: saved frames (ASE Atoms with velocities and a SinglePointCalculator
            holding the model's energy in eV and forces in eV/A; info md_step, time_fs).
        time: [n_steps_done + 1] in fs.
        potential_energy, kinetic_energy: [n_steps_done + 1] in eV.
        temperature: [n_steps_done + 1] in K (over the mobile atoms).
        steps_done: steps completed by this run (fewer than asked when `error` is set).
        error: None, or why the run stopped early (names the step).
        n_atoms: atoms in the structure.
        n_compilations: jit traces during the run (chunk and initial forces).
        n_rebuilds: neighbour-list rebuilds.
        n_overflows: steps whose exact graph outgrew its capacities (each grows them, and
            the step is taken again: one more compilation).
        skin: the neighbour-list skin used, A (`MDConfig.skin`, or the engine's choice).
        wall_s: wall time in s; steps_per_s: steps_done / wall_s.
    """

    frames: list
    time: np.ndarray
    potential_energy: np.ndarray
    kinetic_energy: np.ndarray
    temperature: np.ndarray
    steps_done: int
    error: str | None
    n_atoms: int
    n_compilations: int = 0
    n_rebuilds: int = 0
    n_overflows: int = 0
    skin: float = 0.0
    wall_s: float = 0.0

    @property
    def total_energy(self) -> np.ndarray:
        return self.potential_energy + self.kinetic_energy

    @property
    def steps_per_s(self) -> float:
        return self.steps_done / self.wall_s if self.wall_s > 0 else float("nan")

    def drift(self) -> dict:
        """Total-energy drift: least-squares slope in eV/atom/ps, and the largest
        deviation from the initial value in eV/atom."""
        e = self.total_energy / self.n_atoms
        if len(e) < 2:
            return {"drift_eV_per_atom_per_ps": 0.0, "max_deviation_eV_per_atom": 0.0}
        slope = np.polyfit(self.time / 1000.0, e, 1)[0]
        return {"drift_eV_per_atom_per_ps": float(slope), "max_deviation_eV_per_atom": float(np.max(np.abs(e - e[0])))}


def md_budget(item: Batch, previous: Budget | None) -> Budget:
    """Capacities for one structure's graph `item` (unpadded): `previous` while the item
    fits in it, else capacities with headroom over the item's needs (never below `previous`)."""
    n_nodes, n_edges = item_size(item)
    degree = max_in_degree([item])
    if previous is not None and n_edges <= previous.n_edge and degree <= previous.n_neighbour:
        return previous
    # Outgrown: the counts are drifting (a neighbour shell crossing r_max + skin, say), and
    # each recompile costs as much as many steps, so grow with more room.
    edge_room, neighbour_room = (EDGE_HEADROOM, NEIGHBOUR_HEADROOM) if previous is None else GROWN_HEADROOM
    previous = previous or Budget(0, 0, 0, 0)
    return Budget(
        n_node=max(round_capacity(n_nodes + 1, CAPACITY_STEPS), previous.n_node),
        n_edge=max(round_capacity(math.ceil(n_edges * (1 + edge_room)), CAPACITY_STEPS), previous.n_edge),
        n_graph=2,  # the structure's and the padding graph
        n_neighbour=max(neighbour_width(degree, CAPACITY_STEPS, neighbour_room), previous.n_neighbour),
    )


class MDError(RuntimeError):
    """An MD run that cannot start (bad settings or structure)."""


def drop_labels(atoms: ase.Atoms, keys: DataKeys = DataKeys()) -> ase.Atoms:
    """Remove energy/forces/stress/virials labels (mace keys and ASE's) in place; returns atoms."""
    for name in ("energy", "stress", "virials", "free_energy"):
        atoms.info.pop(getattr(keys, name, name), None)
        atoms.info.pop(name, None)
    for key in (keys.forces, "forces"):
        if key in atoms.arrays:
            del atoms.arrays[key]
    atoms.calc = None
    return atoms


def fixed_atoms(atoms: ase.Atoms) -> np.ndarray:
    """[n_atoms] bool, True for atoms held by ASE FixAtoms constraints; other kinds are refused."""
    fixed = np.zeros(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if not isinstance(constraint, FixAtoms):
            raise MDError(f"constraint {type(constraint).__name__} is not supported (only FixAtoms)")
        fixed[constraint.get_indices()] = True
    return fixed


def initial_velocities(
    atoms: ase.Atoms, temperature: float | None, fixed: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """[n_atoms, 3] in A / ASE time: the atoms' own velocities when set, else
    Maxwell-Boltzmann at `temperature` (K) without centre-of-mass motion (when no atom
    is fixed), else zero. Fixed atoms get zero."""
    velocities = atoms.get_velocities() if atoms.has("momenta") else np.zeros((len(atoms), 3))
    if not np.any(velocities) and temperature:
        masses = atoms.get_masses()[:, None]
        velocities = rng.standard_normal((len(atoms), 3)) * np.sqrt(units.kB * temperature / masses)
        if not fixed.any():
            velocities -= (masses * velocities).sum(0) / masses.sum()
    velocities = np.array(velocities, dtype=np.float64)
    velocities[fixed] = 0.0
    return velocities


@dataclasses.dataclass(frozen=True)
class _System:
    """What stays fixed through one MD run: the structure and its per-node arrays, padded to
    the graph's node capacity `n_nodes`.

    masses: [n_nodes] amu (1 on padding); mobile: [n_nodes] bool (False on fixed atoms and
    padding); np_masses: [n] amu of the real atoms (float64); dof: 3 x the mobile atoms;
    skin: the neighbour-list skin in A."""

    atoms: ase.Atoms
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    n_nodes: int
    masses: jnp.ndarray
    mobile: jnp.ndarray
    np_masses: np.ndarray
    dof: int
    skin: float

    @property
    def n(self) -> int:
        return len(self.atoms)


@dataclasses.dataclass
class _Trajectory:
    """Energies of every step and the frames of every `config.save_every`-th, handed to
    `on_frames` as each chunk is done (the start frame first, unless resuming)."""

    system: _System
    config: MDConfig
    on_frames: Callable[[list], None] | None
    start_step: int
    epot: list = dataclasses.field(default_factory=list)
    ekin: list = dataclasses.field(default_factory=list)
    frames: list = dataclasses.field(default_factory=list)

    def frame(self, step: int, positions, velocities, energy, forces) -> ase.Atoms:
        return md_frame(self.system.atoms, step, step * self.config.dt, positions, velocities, energy, forces)

    def kinetic(self, velocities) -> float:
        return kinetic_energy(self.system.np_masses, velocities)

    def start(self, positions, velocities, energy, forces) -> None:
        """The start frame (step `start_step`)."""
        self.epot.append(float(energy))
        self.ekin.append(self.kinetic(velocities))
        self.frames.append(self.frame(self.start_step, positions, velocities, energy, forces))
        if self.on_frames is not None and not self.start_step:
            self.on_frames(self.frames[:1])

    def add(self, record, accepted: int, last_step: int) -> None:
        """The first `accepted` steps of a chunk's `record`, which began after step `last_step`."""
        energies, vels = np.asarray(record.energy), np.asarray(record.velocities)
        positions, all_forces = np.asarray(record.positions), np.asarray(record.forces)
        saved = len(self.frames)
        for j in range(accepted):
            step = last_step + j + 1
            self.epot.append(float(energies[j]))
            self.ekin.append(self.kinetic(vels[j]))
            if step % self.config.save_every == 0:
                self.frames.append(self.frame(step, positions[j], vels[j], energies[j], all_forces[j]))
        if self.on_frames is not None and len(self.frames) > saved:
            self.on_frames(self.frames[saved:])


class MDEngine:
    """MD with one model; compiled chunks and graph budgets are reused across runs.

    Budgets are kept per number of atoms and only grow, so structures of one size share
    a compiled shape whatever their neighbour counts.
    """

    def __init__(self, model):
        self.model: LoadedModel = model if isinstance(model, LoadedModel) else load_model(model)
        self.r_max = float(self.model.config.r_max)
        self.dtype = np.dtype(self.model.config.dtype)
        self.n_compilations = 0
        self._chunks: dict = {}
        self._initial = make_initial_forces(self.model.module, self.r_max, self._count)
        self._budgets: dict[int, Budget] = {}
        self._exact_budgets: dict[int, ExactBudget] = {}

    def _count(self) -> None:
        self.n_compilations += 1  # runs only while tracing

    def _chunk(self, n_steps: int, ensemble: str):
        key = (n_steps, ensemble)
        if key not in self._chunks:
            self._chunks[key] = make_chunk(self.model.module, n_steps, ensemble, self.r_max, self._count)
        return self._chunks[key]

    def graph(self, numbers, positions, cell, pbc, skin: float):
        """Padded graph with every pair closer than r_max + skin (host side); the capacities of
        the exact graph (`exact_budget`) grown to hold its pairs closer than r_max."""
        config = Configuration(atomic_numbers=numbers, positions=positions, cell=cell, pbc=pbc)
        item = graph_from_configuration(config, self.r_max + skin)
        key = len(numbers)
        budget = self._budgets[key] = md_budget(item, self._budgets.get(key))
        graph = pad_batch([item], *budget[:3], r_max=self.r_max, dtype=self.dtype, n_neighbour=budget.n_neighbour).graph
        self._grow_exact(key, host_counts(graph, self.r_max))
        return graph

    def exact_budget(self, n_atoms: int) -> ExactBudget:
        """The capacities of the exact graphs of structures of `n_atoms` atoms."""
        return self._exact_budgets[n_atoms]

    def _grow_exact(self, n_atoms: int, counts) -> None:
        """Exact capacities that hold `counts` ([3]: edges, largest in-degree, pairs)."""
        previous = self._exact_budgets.get(n_atoms)
        headroom = EXACT_HEADROOM if previous is None else GROWN_HEADROOM
        self._exact_budgets[n_atoms] = exact_budget(counts, previous, headroom, EXACT_STEPS)

    def run(
        self,
        atoms: ase.Atoms,
        config: MDConfig = MDConfig(),
        progress=False,
        on_frames: Callable[[list], None] | None = None,
        start_step: int = 0,
    ) -> MDResult:
        """Run MD from `atoms` (not modified). See `MDConfig` for the settings.

        progress: True for a tqdm bar, or a tqdm bar of the caller's to update.
        on_frames: called with the frames saved in each chunk as soon as the chunk is done
            (the start frame first, unless resuming), so a writer keeps them if the run dies.
        start_step: `atoms` is the frame of this step of a longer run (its velocities
            included): the run continues to `config.steps` in all, numbering steps and
            saving frames as the uninterrupted run would. The Langevin noise after a
            resume is drawn from (seed, start_step), so it differs from the uninterrupted run.
        """
        start_time = time.perf_counter()
        compilations = self.n_compilations
        system, graph, velocities = self._system(atoms, config)
        energy, forces = self._initial_forces(graph, system.n)
        state = MDState(jnp.asarray(graph.positions), jnp.asarray(velocities, self.dtype), forces, energy)
        key = jax.random.PRNGKey(config.seed)
        if start_step:
            key = jax.random.fold_in(key, start_step)
        trajectory = _Trajectory(system, config, on_frames, start_step)
        trajectory.start(graph.positions, velocities, energy, forces)
        error = self._check_start(float(energy), np.asarray(forces), graph, config.min_distance)
        done, rebuilds, overflows, error = self._advance(system, graph, state, key, trajectory, progress, error)
        if error is not None:
            log.warning("%s; keeping %d frames", error, len(trajectory.frames))
        ekin = np.array(trajectory.ekin)
        return MDResult(
            frames=trajectory.frames,
            time=(start_step + np.arange(len(trajectory.epot))) * config.dt,
            potential_energy=np.array(trajectory.epot),
            kinetic_energy=ekin,
            temperature=2 * ekin / (system.dof * units.kB),
            steps_done=done,
            error=error,
            n_atoms=system.n,
            n_compilations=self.n_compilations - compilations,
            n_rebuilds=rebuilds,
            n_overflows=overflows,
            skin=system.skin,
            wall_s=time.perf_counter() - start_time,
        )

    def _initial_forces(self, graph: Graph, n_atoms: int):
        """(energy eV, forces [n_nodes, 3] eV/A) at the graph's positions, the exact capacities
        grown first if they do not hold its pairs."""
        while True:
            energy, forces, counts = self._initial(self.model.variables, graph, budget=self.exact_budget(n_atoms))
            if self.exact_budget(n_atoms).fits(np.asarray(counts)):
                return energy, forces
            self._grow_exact(n_atoms, np.asarray(counts))

    def _system(self, atoms: ase.Atoms, config: MDConfig) -> tuple[_System, Graph, np.ndarray]:
        """(the run's `_System`, its first padded graph, initial velocities [n_nodes, 3] A/(ASE
        time), zero on fixed atoms and padding).

        Raises:
            DataError: an element the model does not know."""
        structure = configuration_from_atoms(atoms, min_distance=None, read_labels=False)
        check_elements([structure], self.model.config.atomic_numbers)
        n = len(atoms)
        fixed = fixed_atoms(atoms)
        rng = np.random.default_rng(config.seed)
        numbers, cell, pbc = structure.atomic_numbers, structure.cell, structure.pbc
        start_velocities = initial_velocities(atoms, config.temperature, fixed, rng)
        skin = config.skin
        if skin is None:
            skin = choose_skin(start_velocities, atoms.get_masses(), ~fixed, config.temperature, config.dt)
        graph = self.graph(numbers, structure.positions, cell, pbc, skin)
        n_nodes = graph.n_nodes

        def padded(x, fill=0.0):
            out = np.full((n_nodes,) + np.shape(x)[1:], fill, dtype=np.asarray(x).dtype)
            out[:n] = x
            return out

        masses = jnp.asarray(padded(atoms.get_masses(), 1.0), self.dtype)
        mobile = jnp.asarray(padded(~fixed, False))
        dof = max(3 * int((~fixed).sum()), 1)
        np_masses = np.asarray(masses, np.float64)[:n]
        system = _System(atoms, numbers, cell, pbc, n_nodes, masses, mobile, np_masses, dof, skin)
        return system, graph, padded(start_velocities)

    def _advance(
        self, system: _System, graph: Graph, state: MDState, key, trajectory: _Trajectory, progress, error: str | None
    ) -> tuple[int, int, int, str | None]:
        """Chunks of `check_every` steps until `config.steps` (or `error`); the neighbour list is
        rebuilt when a chunk stops because an atom moved more than skin/2 from where the list
        was built, the exact capacities grown when a step outgrew them: (steps done, rebuilds,
        overflows, the error that stopped the run or None)."""
        config, start_step = trajectory.config, trajectory.start_step
        variables = self.model.variables
        n_steps = max(config.steps - start_step, 0)
        params = chunk_params(config, system.skin, self.dtype)
        chunk = self._chunk(config.check_every, config.ensemble)
        done, rebuilds, overflows = 0, 0, 0
        reference, fresh = state.positions, True  # where `graph` was built; built for this chunk
        bar = _progress(n_steps, progress)
        while error is None and done < n_steps:
            params = params._replace(limit=jnp.asarray(min(config.check_every, n_steps - done), jnp.int32))
            budget = self._exact_budgets[system.n]
            state, key, record = chunk(
                variables, graph, system.masses, system.mobile, state, reference, key, params, budget=budget
            )
            status = np.asarray(record.status)
            accepted = int(np.argmax(status != OK)) if np.any(status != OK) else len(status)
            trajectory.add(record, accepted, start_step + done)
            done += accepted
            bar.update(accepted)
            error = stop_message(record, status, accepted, start_step + done + 1, graph, config, system.skin, fresh)
            fresh = fresh and accepted == 0  # the graph was built at the current state
            stop = int(status[accepted]) if accepted < len(status) else LIMIT
            if error is None and stop == OVERFLOW:
                self._grow_exact(system.n, np.asarray(record.exact_counts)[accepted])
                overflows += 1
            if error is None and done < n_steps and stop == REBUILD:
                positions = np.asarray(state.positions, np.float64)[: system.n]
                graph = self.graph(system.numbers, positions, system.cell, system.pbc, system.skin)
                if graph.n_nodes != system.n_nodes:
                    raise MDError("node capacity changed during a run")  # budgets never shrink: a bug
                reference, fresh = state.positions, True
                rebuilds += 1
            temperature = 2 * trajectory.ekin[-1] / (system.dof * units.kB)
            bar.set_postfix(T=f"{temperature:.0f}K", E=f"{trajectory.epot[-1]:.3f}")
        bar.close()
        return done, rebuilds, overflows, error

    @staticmethod
    def _check_start(energy, forces, graph, min_distance) -> str | None:
        if not (np.isfinite(energy) and np.all(np.isfinite(forces))):
            return "MD cannot start: the model gives NaN/inf energy or forces for the initial structure (step 0)"
        positions = np.asarray(graph.positions, np.float64)
        cell = np.asarray(graph.cell, np.float64)[0]
        real = np.asarray(graph.node_mask)[np.asarray(graph.senders)]
        s, r = np.asarray(graph.senders)[real], np.asarray(graph.receivers)[real]
        d = np.linalg.norm(positions[r] - positions[s] + np.asarray(graph.unit_shifts)[real] @ cell, axis=1)
        if len(d) and d.min() < min_distance:
            e = int(np.argmin(d))
            return f"MD cannot start (step 0): atoms {s[e]} and {r[e]} are {d[e]:.3f} A apart (< {min_distance} A)"
        return None


def run_md(
    model,
    atoms: ase.Atoms,
    config: MDConfig = MDConfig(),
    progress: bool = False,
    on_frames: Callable[[list], None] | None = None,
    start_step: int = 0,
) -> MDResult:
    """One MD run with a fresh `MDEngine` (see `MDEngine.run`). `model`: a folder or a LoadedModel."""
    return MDEngine(model).run(atoms, config, progress, on_frames=on_frames, start_step=start_step)


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


class _SharedBar(_NoBar):
    """A bar owned by the caller (several runs in one bar): updated, never closed."""

    def __init__(self, bar):
        self.update, self.set_postfix = bar.update, bar.set_postfix


def _progress(total: int, show):
    if hasattr(show, "update"):
        return _SharedBar(show)
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="MD", disable=None)  # None: only on a terminal


def chunk_params(config: MDConfig, skin: float, dtype) -> ChunkParams:
    """The chunk's settings in ASE units (dt in ASE time, kT and friction per ASE time);
    `skin` in A, the neighbour list's."""
    return ChunkParams(
        dt=jnp.asarray(config.dt * units.fs, dtype),
        kT=jnp.asarray(units.kB * (config.temperature or 0.0), dtype),
        friction=jnp.asarray(config.friction / units.fs, dtype),
        half_skin=jnp.asarray(0.5 * skin, dtype),
        min_distance=jnp.asarray(config.min_distance, dtype),
        limit=jnp.asarray(config.check_every, jnp.int32),
    )


def md_frame(atoms: ase.Atoms, step: int, time_fs: float, positions, velocities, energy, forces) -> ase.Atoms:
    """A copy of `atoms` at `step`: positions [n_nodes >= n, 3] A, velocities, energy eV and
    forces eV/A (padding rows dropped), with md_step and time_fs in its info."""
    n = len(atoms)
    a = atoms.copy()
    if step:
        drop_labels(a)  # labels the start carried (DFT, say) belong to step 0 only
    a.positions = np.asarray(positions, np.float64)[:n]
    a.set_velocities(np.asarray(velocities, np.float64)[:n])
    a.calc = SinglePointCalculator(a, energy=float(energy), forces=np.asarray(forces, np.float64)[:n])
    a.info.update(md_step=step, time_fs=time_fs)
    return a


def stop_message(
    record, status: np.ndarray, accepted: int, step: int, graph, config: MDConfig, skin: float, fresh: bool
) -> str | None:
    """Why a chunk stopped after `accepted` good steps, as an error naming `step` (the first
    bad one), or None when it ran to its limit or stopped for a neighbour-list rebuild.
    `fresh`: the chunk's graph was built at the state it started from, so a rebuild
    wanted before any step was accepted means one step moved an atom more than skin/2."""
    reason = int(status[accepted]) if accepted < len(status) else LIMIT
    if reason == NOT_FINITE:
        return (
            f"MD stopped at step {step}: energy, forces or positions became NaN/inf "
            f"(the run exploded; try a smaller dt, or the model is outside its training domain)"
        )
    if reason == TOO_CLOSE:
        e = int(record.closest_edge[accepted])
        i, j = int(graph.senders[e]), int(graph.receivers[e])
        return (
            f"MD stopped at step {step}: atoms {i} and {j} came "
            f"{float(record.min_distance[accepted]):.3f} A apart (< min_distance "
            f"{config.min_distance} A); the run exploded or the model lets atoms collapse"
        )
    if reason == REBUILD and accepted == 0 and fresh:
        return (
            f"MD stopped at step {step}: an atom moved more than skin/2 = "
            f"{skin / 2:.3g} A in one step; use a smaller dt or a larger skin"
        )
    return None


def kinetic_energy(masses: np.ndarray, velocities) -> float:
    """0.5 sum m v^2 (eV, ASE units) of the first len(masses) rows of `velocities` [n_nodes, 3]."""
    return 0.5 * float(np.sum(masses[:, None] * np.asarray(velocities, np.float64)[: len(masses)] ** 2))
