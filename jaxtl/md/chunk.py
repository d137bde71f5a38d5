"""`k` MD steps as one jit-compiled `lax.scan` on a fixed padded graph.

The graph holds every pair closer than r_max + skin at the `reference` positions it was
built at. While no atom has moved more than skin/2 from there, every pair closer than
r_max is in it, and the extra edges (r_max <= r < r_max + skin) carry exactly zero
messages (the cutoff envelope vanishes there), so the forces are exact. Each step checks
this and stops the chunk *before* accepting a state that breaks it, or one that is not
finite, or one with atoms closer than `min_distance`; the host rebuilds the graph and
carries on, or stops with a message. A graph outlives chunks: it is rebuilt only when a
chunk stops for it. `lax.scan` has a fixed length, so the steps after a stop remain, but
a `lax.cond` skips their work: a chunk that stops early costs only the steps it took.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.md.integrators import MDState, langevin_baoab_step, velocity_verlet_step

# Why a proposed step was not accepted (0: accepted).
OK, NOT_FINITE, TOO_CLOSE, REBUILD, LIMIT = 0, 1, 2, 3, 4


class StepRecord(NamedTuple):
    """Per-step outputs of a chunk, stacked over its `k` steps.

    Entries of accepted steps describe the accepted state; at the first rejected step
    `status` says why, and `min_distance`/`closest_edge` describe the rejected proposal.
    """

    positions: jnp.ndarray  # [k, n_nodes, 3] A
    velocities: jnp.ndarray  # [k, n_nodes, 3] A / ASE time
    forces: jnp.ndarray  # [k, n_nodes, 3] eV/A
    energy: jnp.ndarray  # [k] potential energy, eV
    status: jnp.ndarray  # [k] int32, OK or the reason of the stop
    min_distance: jnp.ndarray  # [k] shortest real edge of the proposal, A
    closest_edge: jnp.ndarray  # [k] index of that edge


class ChunkParams(NamedTuple):
    """Run-time scalars (traced, so changing them does not recompile)."""

    dt: jnp.ndarray  # ASE time units
    kT: jnp.ndarray  # eV
    friction: jnp.ndarray  # 1 / ASE time unit
    half_skin: jnp.ndarray  # A
    min_distance: jnp.ndarray  # A
    limit: jnp.ndarray  # int32, steps to take at most in this chunk


def make_force_fn(module, variables, graph: Graph):
    """positions [n_nodes, 3] -> (energy eV, forces [n_nodes, 3] eV/A) on a fixed graph."""

    def energy(positions):
        out = module.apply(variables, graph._replace(positions=positions))
        return jnp.sum(out["energy"] * graph.graph_mask)

    def force_fn(positions):
        e, g = jax.value_and_grad(energy)(positions)
        return e, -g * graph.node_mask[:, None]

    return force_fn


def make_chunk(module, n_steps: int, ensemble: str, on_trace=None):
    """A jit-compiled `chunk(variables, graph, masses, mobile, state, reference, key, params)`.

    `reference`: [n_nodes, 3] A, the positions `graph` was built at (the skin check
    measures each atom's displacement from there).
    Returns `(state, key, StepRecord)`: the last accepted state and the per-step record.
    `ensemble` is "nve" (velocity Verlet) or "langevin" (BAOAB).
    """
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")

    def chunk(variables, graph: Graph, masses, mobile, state: MDState, reference, key, params: ChunkParams):
        if on_trace is not None:
            on_trace()
        force_fn = make_force_fn(module, variables, graph)
        real_edge = graph.node_mask[graph.senders]

        def propose(i, state, sub):
            """The next state, why it may not be accepted, and its shortest real edge."""
            if ensemble == "nve":
                new = velocity_verlet_step(force_fn, state, params.dt, masses, mobile)
            else:
                new = langevin_baoab_step(force_fn, state, params.dt, masses, mobile, params.kT, params.friction, sub)
            moved = jnp.max(jnp.where(mobile, jnp.linalg.norm(new.positions - reference, axis=1), 0.0))
            lengths = jnp.where(real_edge, jnp.linalg.norm(edge_vectors(graph, new.positions), axis=1), jnp.inf)
            closest = jnp.argmin(lengths).astype(jnp.int32)
            finite = (
                jnp.isfinite(new.energy)
                & jnp.all(jnp.isfinite(new.forces))
                & jnp.all(jnp.isfinite(new.positions))
                & jnp.all(jnp.isfinite(new.velocities))
            )
            status = jnp.select(
                [i >= params.limit, ~finite, lengths[closest] < params.min_distance, moved > params.half_skin],
                [LIMIT, NOT_FINITE, TOO_CLOSE, REBUILD],
                OK,
            ).astype(jnp.int32)
            return new, status, lengths[closest], closest

        def stopped(i, state, sub):
            return state, jnp.int32(LIMIT), jnp.asarray(jnp.inf, state.positions.dtype), jnp.int32(0)

        def body(carry, i):
            state, key, alive = carry
            key, sub = jax.random.split(key)
            new, status, shortest, closest = jax.lax.cond(alive, propose, stopped, i, state, sub)
            accept = alive & (status == OK)
            state = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, state)
            record = (state.positions, state.velocities, state.forces, state.energy, status, shortest, closest)
            return (state, key, accept), record

        (state, key, _), rec = jax.lax.scan(body, (state, key, jnp.array(True)), jnp.arange(n_steps))
        return state, key, StepRecord(*rec)

    return jax.jit(chunk)


def make_initial_forces(module, on_trace=None):
    """A jit-compiled `(variables, graph) -> (energy eV, forces eV/A)` at the graph's positions."""

    def initial(variables, graph: Graph):
        if on_trace is not None:
            on_trace()
        return make_force_fn(module, variables, graph)(graph.positions)

    return jax.jit(initial)
