"""ASE calculator for jaxtl models."""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from jaxtl.api import LoadedModel, load_model
from jaxtl.ase_state import QuickStateCheck
from jaxtl.graph.batching import Budget, graph_from_configuration, pad_to_capacity
from jaxtl.graph.io import DataError, check_elements, configuration_from_atoms


class MACECalculator(QuickStateCheck, Calculator):
    """Energy, free energy, forces and (periodic cells) stress from a jaxtl MACE.

    Args:
        model: a jaxtl model folder, or a `LoadedModel`.
        default_dtype: "float64" or "float32" (default: the model's own).
        head: which head of a multi-head model to use.
        backend: "xla" (default) or "cueq", NVIDIA cuEquivariance kernels (a folder
            given as `model` only).

    Structures are padded to rounded capacities that never shrink during a run,
    so an MD trajectory compiles a handful of times, not once per step.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self, model, default_dtype: str | None = None, head: str | None = None, backend: str = "xla", **kwargs
    ):
        super().__init__(**kwargs)
        if isinstance(model, LoadedModel):
            self.model = model
        else:
            self.model = load_model(model, dtype=default_dtype, head=head, backend=backend)
        self.r_max = float(self.model.config.r_max)
        self._budget: Budget | None = None
        self._dtype = np.float64 if self.model.config.dtype == "float64" else np.float32

    @property
    def n_compilations(self) -> int:
        return self.model.n_compilations

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        try:
            config = configuration_from_atoms(self.atoms, min_distance=None, read_labels=False)
        except DataError as err:
            raise ValueError(f"MACECalculator: {err}") from err
        check_elements([config], self.model.config.atomic_numbers)
        item = graph_from_configuration(config, self.r_max)
        batch, self._budget = pad_to_capacity(
            [item], self.r_max, at_least=self._budget, dtype=self._dtype, neighbour_headroom=0.125
        )
        periodic = bool(np.any(self.atoms.pbc))
        out = self.model.predict(batch.graph, compute_stress=periodic)
        n = len(self.atoms)
        energy = float(np.asarray(out["energy"])[0])
        forces = np.asarray(out["forces"], dtype=np.float64)[:n]
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise FloatingPointError("MACECalculator: the model returned NaN or inf (atoms too close?)")
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        self.results["energies"] = np.asarray(out["node_energy"], dtype=np.float64)[:n]
        self.results["forces"] = forces
        if periodic and self.atoms.cell.rank == 3:
            stress = np.asarray(out["stress"], dtype=np.float64)[0]
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
