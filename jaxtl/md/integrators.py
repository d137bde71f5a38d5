"""Pure, jit-able MD integrators: velocity Verlet (NVE) and Langevin BAOAB (NVT).

Units are ASE's: positions in A, masses in amu, energies in eV, so velocities are in
A per ASE time unit (A sqrt(amu/eV); 1 fs = `ase.units.fs` of them) and `dt` is in
ASE time units. Callers convert from fs with `ase.units.fs`.

A force function may return an auxiliary output beside (energy, forces), as with
`jax.value_and_grad(..., has_aux=True)`: `force_fn(x) -> ((energy, forces), aux)`, and the
step then returns `(state, aux)` (what it learnt building the graph at x, say).

Every function acts on padded arrays: `mobile` is False for padding nodes and for
atoms held fixed (ASE `FixAtoms`), whose velocities stay zero and positions unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# positions [n_nodes, 3] A -> (potential energy eV, forces [n_nodes, 3] eV/A)
ForceFn = Callable[[jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]


class MDState(NamedTuple):
    """One point of a trajectory.

    Attributes:
        positions: [n_nodes, 3] in A (unwrapped: periodic images are never folded back).
        velocities: [n_nodes, 3] in A / ASE time unit.
        forces: [n_nodes, 3] in eV/A at `positions`.
        energy: [] potential energy in eV at `positions`.
    """

    positions: jnp.ndarray
    velocities: jnp.ndarray
    forces: jnp.ndarray
    energy: jnp.ndarray


def kinetic_energy(velocities: jnp.ndarray, masses: jnp.ndarray, mobile: jnp.ndarray) -> jnp.ndarray:
    """0.5 sum m v^2 over mobile atoms, in eV."""
    return 0.5 * jnp.sum(jnp.where(mobile[:, None], masses[:, None] * velocities**2, 0.0))


def _forces(force_fn, x, has_aux: bool):
    """((energy, forces), aux) of `force_fn` at x; aux None without `has_aux`."""
    return force_fn(x) if has_aux else (force_fn(x), None)


def velocity_verlet_step(force_fn: ForceFn, state: MDState, dt, masses, mobile, has_aux: bool = False):
    """One NVE step (kick, drift, force, kick); one force evaluation. Returns the new
    `MDState`, or `(state, aux)` with `has_aux`."""
    move = mobile[:, None]
    v = state.velocities + jnp.where(move, 0.5 * dt * state.forces / masses[:, None], 0.0)
    x = state.positions + jnp.where(move, dt * v, 0.0)
    (energy, forces), aux = _forces(force_fn, x, has_aux)
    v = v + jnp.where(move, 0.5 * dt * forces / masses[:, None], 0.0)
    new = MDState(x, v, forces, energy)
    return (new, aux) if has_aux else new


def langevin_baoab_step(
    force_fn: ForceFn, state: MDState, dt, masses, mobile, kT, friction, key: jax.Array, has_aux: bool = False
):
    """One Langevin step in the BAOAB splitting (Leimkuhler and Matthews 2013).

    kT: thermal energy in eV; friction: in 1 / ASE time unit. The Ornstein-Uhlenbeck
    part is solved exactly, so the step samples the canonical distribution with an
    O(dt^2) configurational error; one force evaluation per step. Returns the new
    `MDState`, or `(state, aux)` with `has_aux`.
    """
    move = mobile[:, None]
    c1 = jnp.exp(-friction * dt)
    c2 = jnp.sqrt(1.0 - c1**2)
    v = state.velocities + jnp.where(move, 0.5 * dt * state.forces / masses[:, None], 0.0)
    x = state.positions + jnp.where(move, 0.5 * dt * v, 0.0)
    noise = jax.random.normal(key, v.shape, v.dtype)
    v = jnp.where(move, c1 * v + c2 * jnp.sqrt(kT / masses[:, None]) * noise, 0.0)
    x = x + jnp.where(move, 0.5 * dt * v, 0.0)
    (energy, forces), aux = _forces(force_fn, x, has_aux)
    v = v + jnp.where(move, 0.5 * dt * forces / masses[:, None], 0.0)
    new = MDState(x, v, forces, energy)
    return (new, aux) if has_aux else new
