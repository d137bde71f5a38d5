"""`k` MD steps as one jit-compiled `lax.scan` on a fixed padded graph.

The graph holds every pair closer than r_max + skin at the `reference` positions it was
built at. While no atom has moved more than skin/2 from there, every pair closer than
r_max is in it. Each step evaluates the model on the pairs closer than r_max at its own
positions (`jaxtl.md.exact_graph`): the others carry exactly zero messages (the cutoff
envelope vanishes there), so the forces are exact, at the cost of the exact list. Each
step checks this and stops the chunk *before* accepting a state that breaks it, or one
whose exact graph outgrew its capacities, or one that is not finite, or one with atoms
closer than `min_distance`; the host rebuilds the list or grows the capacities and
carries on, or stops with a message. A graph outlives chunks: it is rebuilt only when a
chunk stops for it. `lax.scan` has a fixed length, so the steps after a stop remain, but
a `lax.cond` skips their work: a chunk that stops early costs only the steps it took.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxtl.graph.graph import Graph, edge_vectors
from jaxtl.md.exact_graph import ExactBudget, exact_graph
from jaxtl.md.integrators import MDState, langevin_baoab_step, velocity_verlet_step

# Why a proposed step was not accepted (0: accepted).
OK, NOT_FINITE, TOO_CLOSE, REBUILD, LIMIT, OVERFLOW = 0, 1, 2, 3, 4, 5


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
    exact_counts: jnp.ndarray  # [k, 3] int32, what the proposal's exact graph needed (`exact_graph`)


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


def make_exact_force_fn(module, variables, graph: Graph, r_max: float, budget: ExactBudget, wanted=None):
    """positions [n_nodes, 3] -> ((energy eV, forces [n_nodes, 3] eV/A), (counts [3], lengths
    [n_edges] A)): the model on the pairs of `graph` closer than r_max at the positions
    (`exact_graph`, whose counts say whether they fit `budget`), and the lengths of all
    the edges of `graph` there.

    The model is not evaluated (energy and forces are zero) where the exact graph outgrew
    `budget`, or where `wanted(positions)` (a traced bool) is False: a step that will not be
    accepted then costs only the cut."""

    def force_fn(positions):
        lengths = jnp.linalg.norm(edge_vectors(graph, positions), axis=1)
        exact, counts = exact_graph(graph, lengths, r_max, budget)
        usable = budget_fits(counts, budget)
        if wanted is not None:
            usable = usable & wanted(positions)

        def skipped(positions):
            return jnp.zeros((), positions.dtype), jnp.zeros_like(positions)

        forces = jax.lax.cond(usable, make_force_fn(module, variables, exact), skipped, positions)
        return forces, (counts, lengths)

    return force_fn


def make_chunk(module, n_steps: int, ensemble: str, r_max: float, on_trace=None):
    """A jit-compiled `chunk(variables, graph, masses, mobile, state, reference, key, params, budget)`.

    `reference`: [n_nodes, 3] A, the positions `graph` was built at (the skin check
    measures each atom's displacement from there); `budget`: the `ExactBudget` of the
    exact graphs the model sees (static: each new one compiles).
    Returns `(state, key, StepRecord)`: the last accepted state and the per-step record.
    `ensemble` is "nve" (velocity Verlet) or "langevin" (BAOAB).
    """
    if ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {ensemble!r}")

    def chunk(variables, graph: Graph, masses, mobile, state: MDState, reference, key, params: ChunkParams, budget):
        if on_trace is not None:
            on_trace()

        def displacement(positions):
            """The largest distance of a mobile atom from where `graph` was built, A."""
            return jnp.max(jnp.where(mobile, jnp.linalg.norm(positions - reference, axis=1), 0.0))

        # a proposal that used up the skin is not accepted (the host rebuilds the list): no
        # forces for it (the comparison is False for NaN, so a NaN position gets its NaN forces)
        def wanted(positions):
            return ~(displacement(positions) > params.half_skin)

        force_fn = make_exact_force_fn(module, variables, graph, r_max, budget, wanted)
        real_edge = graph.node_mask[graph.senders]

        def propose(i, state, sub):
            """The next state, why it may not be accepted, its shortest real edge and its exact graph's counts."""
            if ensemble == "nve":
                new, (counts, lengths) = velocity_verlet_step(force_fn, state, params.dt, masses, mobile, has_aux=True)
            else:
                new, (counts, lengths) = langevin_baoab_step(
                    force_fn, state, params.dt, masses, mobile, params.kT, params.friction, sub, has_aux=True
                )
            moved = displacement(new.positions)
            overflow = ~budget_fits(counts, budget)
            lengths = jnp.where(real_edge, lengths, jnp.inf)
            closest = jnp.argmin(lengths).astype(jnp.int32)
            finite = (
                jnp.isfinite(new.energy)
                & jnp.all(jnp.isfinite(new.forces))
                & jnp.all(jnp.isfinite(new.positions))
                & jnp.all(jnp.isfinite(new.velocities))
            )
            # forces of an overflowed graph are not the model's: only the integrator's
            # positions (the skin and distance checks) can be judged before the capacities grow
            status = jnp.select(
                [
                    i >= params.limit,
                    ~finite & ~overflow,
                    lengths[closest] < params.min_distance,
                    moved > params.half_skin,
                    overflow,
                ],
                [LIMIT, NOT_FINITE, TOO_CLOSE, REBUILD, OVERFLOW],
                OK,
            ).astype(jnp.int32)
            return new, status, lengths[closest], closest, counts

        def stopped(i, state, sub):
            inf = jnp.asarray(jnp.inf, state.positions.dtype)
            return state, jnp.int32(LIMIT), inf, jnp.int32(0), jnp.zeros((3,), jnp.int32)

        def body(carry, i):
            state, key, alive = carry
            key, sub = jax.random.split(key)
            new, status, shortest, closest, counts = jax.lax.cond(alive, propose, stopped, i, state, sub)
            accept = alive & (status == OK)
            state = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, state)
            record = (state.positions, state.velocities, state.forces, state.energy, status, shortest, closest, counts)
            return (state, key, accept), record

        (state, key, _), rec = jax.lax.scan(body, (state, key, jnp.array(True)), jnp.arange(n_steps))
        return state, key, StepRecord(*rec)

    return jax.jit(chunk, static_argnames="budget")


def budget_fits(counts: jnp.ndarray, budget: ExactBudget) -> jnp.ndarray:
    """Whether `exact_graph`'s counts [3] fit `budget` (traced)."""
    return jnp.all(counts <= jnp.array(budget.limits, counts.dtype))


def make_initial_forces(module, r_max: float, on_trace=None):
    """A jit-compiled `(variables, graph, budget) -> (energy eV, forces eV/A, counts [3])` at the
    graph's positions, on its pairs closer than `r_max` (`exact_graph`; static `budget`). The
    energy and forces are zero where the counts do not fit `budget`."""

    def initial(variables, graph: Graph, budget: ExactBudget):
        if on_trace is not None:
            on_trace()
        (energy, forces), (counts, _) = make_exact_force_fn(module, variables, graph, r_max, budget)(graph.positions)
        return energy, forces, counts

    return jax.jit(initial, static_argnames="budget")
