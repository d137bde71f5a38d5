"""ASE calculator for linear ACE students: one compiled program per padded layout.

Reads ace-jax's `model.npz`, evaluates ace-jax's evaluation form of it (`lean`) with
`ace_eval` on neighbour rows (`ace_rows`): the neighbour list is jaxtl's (vesin), the
capacities are rounded and never shrink, and energy, site energies, forces and virial
come from one jitted call on two arrays as one array, so a trajectory compiles a handful
of times and each step is one dispatch, one transfer each way and one conversion.
Each layout's program is compiled ahead of time and kept: calling a compiled executable
with the host arrays costs far less than `jax.jit`'s dispatch of the same numpy arguments,
a large share of a call on a few hundred atoms. The radials are read from ace-jax's B-spline
table by default (`DEFAULT_RADIAL_TABLE` intervals): on the H2/Cu students forces agree
with the exact radials to ~1e-4 meV/A and energies to ~1e-7 meV, and the call is cheaper.
Models this path does not cover raise NotImplementedError at construction
(`ace_eval.check_supported`); `jaxtl.distill.ace.ace_calculator` then uses ace-jax's own.
"""

from __future__ import annotations

import functools
import time

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from jaxtl.ase_state import QuickStateCheck
from jaxtl.distill.ace_rows import RowLayout, pack_rows
from jaxtl.graph.io import DataError

# intervals of the radial table a calculator uses unless told otherwise (ace-jax's default)
DEFAULT_RADIAL_TABLE = 4000


def load_lean_model(model_file, radial_table: int | None = None):
    """(ace-jax's evaluation form of the model in `model_file`, its meta dict), in float64;
    with `radial_table` intervals, its radials tabulated (`ace_jax.eval.model.with_radial_table`)."""
    import jax
    import jax.numpy as jnp
    from ace_jax.eval.io import load
    from ace_jax.eval.model import lean, with_radial_table

    if not jax.config.jax_enable_x64:
        raise RuntimeError("ACE students evaluate in float64: call jax.config.update('jax_enable_x64', True) first")
    model, meta, _ = load(str(model_file), dtype=jnp.float64)
    return with_radial_table(lean(model), radial_table)[0], meta


class CompiledACECalculator(QuickStateCheck, Calculator):
    """Energy, free energy, per-atom energies, forces and (periodic cells) stress of a
    linear ACE (ace-jax `model.npz`), in float64. Stress (the virial) is computed from the
    first call that asks for it on; calls before it return energy and forces alone.

    Args:
        model_file: ace-jax's model.npz.
        radial_table: a number of intervals (default `DEFAULT_RADIAL_TABLE`): the radials
            read from cubic B-spline tables in r (ace-jax's `radial_table`, an approximation:
            at 4000 intervals forces within ~1e-7 eV/A of the exact ones; below 0.5 A, far
            inside any physical distance, the end cubic extrapolates), cheaper per edge;
            None: the radials as fitted.
        headroom: neighbour slots per centre beyond the largest count, as a fraction.
        source: how errors name the model (default: the file).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model_file,
        radial_table: int | None = DEFAULT_RADIAL_TABLE,
        headroom: float = 0.0,
        source: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        import jax

        from jaxtl.distill.ace_eval import check_supported
        from jaxtl.graph.neighbours import vesin_list

        self.model, self.meta = load_lean_model(model_file, radial_table)
        check_supported(self.model)
        self.elements = tuple(int(z) for z in self.meta["elements"])
        self.cutoff = float(self.meta["rcut"])
        self.headroom = headroom
        self.source = source or str(model_file)
        self._index = np.full(max(self.elements) + 1, -1, np.int64)
        self._index[list(self.elements)] = np.arange(len(self.elements))
        self._layout: RowLayout | None = None
        self._last_species: tuple[np.ndarray, np.ndarray] | None = None
        self._programs: dict = {}  # (RowLayout, with virial) -> its compiled executable
        # the virial is computed from the first call that asks for stress on (an NPT run asks
        # every step; a run at fixed cell never pays for it)
        self._with_virial = False
        self.last_timing: dict | None = None
        self._evaluate = jax.jit(functools.partial(_flat_results, self.model), static_argnums=(0, 1))
        self._vesin_list = vesin_list(self.cutoff)

    @property
    def n_compilations(self) -> int:
        """Programs compiled so far: one per padded layout (and per with or without virial)."""
        return len(self._programs)

    def program(self, layout: RowLayout, arrays, virial: bool = True):
        """The compiled energy+forces(+virial) of `layout` (compiled on its first use)."""
        compiled = self._programs.get((layout, virial))
        if compiled is None:
            compiled = self._evaluate.lower(layout, virial, *arrays).compile()
            self._programs[layout, virial] = compiled
        return compiled

    def species_of(self, numbers) -> np.ndarray:
        """[n] species index per atom; a DataError naming an element the model lacks."""
        numbers = np.asarray(numbers, np.int64)
        last = self._last_species
        if last is not None and np.array_equal(last[0], numbers):  # a trajectory: the same atoms
            return last[1]
        known = numbers < len(self._index)
        species = np.where(known, self._index[np.where(known, numbers, 0)], -1)
        if np.any(species < 0):
            bad = int(numbers[np.argmax(species < 0)])
            names = ", ".join(chemical_symbols[z] for z in self.elements)
            raise DataError(
                f"{self.source}: element {chemical_symbols[bad]} (Z={bad}) is not one of the ACE "
                f"student's elements [{names}]"
            )
        self._last_species = (numbers.copy(), species)
        return species

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        # ASE's get_property has just stored a copy of `atoms` as self.atoms; ASE's
        # Calculator.calculate would copy it once more (and look for a working directory this
        # calculator never writes to), a sizeable share of a call on a small structure
        if atoms is not None and (self.atoms is None or self.check_state(atoms)):
            self.atoms = atoms.copy()
        atoms = self.atoms
        n = len(atoms)
        species = self.species_of(atoms.numbers)
        self._with_virial = self._with_virial or "stress" in properties
        started = time.perf_counter()
        self._layout, arrays = pack_rows(
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            species,
            len(self.elements),
            self.cutoff,
            at_least=self._layout,
            headroom=self.headroom,
            vesin_list=self._vesin_list,
        )
        packed = time.perf_counter()
        flat = np.asarray(self.program(self._layout, arrays, self._with_virial)(*arrays))
        # the host's share (neighbour list and rows) and the compiled call's (with transfers)
        self.last_timing = {"nlist_s": packed - started, "model_s": time.perf_counter() - packed}
        r = self._layout.n_rows
        energy, site, forces, virial = flat[0], flat[1 : 1 + n], flat[1 + r : 1 + r + 3 * n], flat[1 + 4 * r :]
        if not np.all(np.isfinite(flat[: 1 + 4 * r])):
            raise FloatingPointError(f"{self.source}: the ACE returned NaN or inf (atoms too close?)")
        energy = float(energy)
        self.results.update(energy=energy, free_energy=energy, energies=site, forces=forces.reshape(n, 3))
        volume = _volume(atoms.cell.array.tobytes()) if self._with_virial and np.any(atoms.pbc) else 0.0
        if volume > 0.0:  # a periodic cell of three lattice vectors
            self.results["stress"] = full_3x3_to_voigt_6_stress(-virial.reshape(3, 3) / volume)


@functools.lru_cache(maxsize=64)
def _volume(cell: bytes) -> float:
    """|det| of a [3, 3] float64 cell given as bytes (a trajectory asks about one cell again and again)."""
    return abs(float(np.linalg.det(np.frombuffer(cell, dtype=np.float64).reshape(3, 3))))


def _flat_results(model, layout: RowLayout, virial: bool, vectors, indices):
    """`energy_forces_virial` as one array [1 + n_rows + 3 n_rows (+ 9)]: energy, site
    energies, forces (row-major), with `virial` the virial (row-major); one array to bring
    back to the host. Without it, XLA drops the virial's work."""
    import jax.numpy as jnp

    from jaxtl.distill.ace_eval import energy_forces_virial

    energy, site, forces, w = energy_forces_virial(model, layout, vectors, indices)
    return jnp.concatenate([energy[None], site, forces.reshape(-1)] + ([w.reshape(-1)] if virial else []))
