"""Molecular dynamics with jaxtl models: jit-compiled integrators and an ASE path."""

from jaxtl.md.integrators import MDState, kinetic_energy, langevin_baoab_step, velocity_verlet_step
from jaxtl.md.simulate import MDConfig, MDEngine, MDError, MDResult, run_md

__all__ = [
    "MDConfig",
    "MDEngine",
    "MDError",
    "MDResult",
    "MDState",
    "kinetic_energy",
    "langevin_baoab_step",
    "run_md",
    "velocity_verlet_step",
]
