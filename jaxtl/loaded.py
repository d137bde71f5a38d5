"""`LoadedModel`: a MACE architecture and its variables, ready to evaluate (jit-compiled).

Below `jaxtl.api` (which adds loading by path or released name) so that the conversion
code can build one to verify a converted model without importing the loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxtl.graph.graph import Graph
from jaxtl.heads import select_head
from jaxtl.model import MACE, MACEConfig, make_predict
from jaxtl.model_io import cast_variables


def enable_x64_if(dtype: str) -> None:
    if dtype == "float64" and not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


@dataclasses.dataclass
class LoadedModel:
    """A MACE ready to evaluate.

    Attributes:
        config: the architecture.
        variables: {"params": trainable pytree, "constants": stored buffers}.
        predict: jit-compiled `predict(variables, graph, compute_stress) -> dict`
            (energy [n_graphs] eV, node_energy [n_nodes], forces [n_nodes, 3] eV/A,
            stress [n_graphs, 3, 3] eV/A^3, virials [n_graphs, 3, 3] eV).
        n_compilations: how many times `predict` has been traced (one per distinct
            padded shape and stress flag).
    """

    config: MACEConfig
    variables: dict
    module: MACE
    metadata: dict
    _predict: Callable = None
    n_compilations: int = 0

    @property
    def params(self) -> dict:
        return self.variables["params"]

    @property
    def constants(self) -> dict:
        return self.variables["constants"]

    def __post_init__(self):
        raw = make_predict(self.module)

        def counted(variables, graph, compute_stress):
            self.n_compilations += 1  # runs only while tracing
            return raw(variables, graph, compute_stress)

        self._predict = jax.jit(counted, static_argnums=2)

    def predict(self, graph: Graph, compute_stress: bool = True, variables: dict | None = None) -> dict:
        return self._predict(self.variables if variables is None else variables, graph, compute_stress)

    def energy_fn(self) -> Callable:
        """A pure function `(params, graph) -> energies [n_graphs]` for use inside JAX code."""
        constants = self.constants
        module = self.module

        def energy(params, graph):
            return module.apply({"params": params, "constants": constants}, graph)["energy"]

        return energy


def build_loaded_model(
    config: MACEConfig,
    variables: dict,
    metadata: dict | None = None,
    dtype: str | None = None,
    head: str | None = None,
    backend: str = "xla",
) -> LoadedModel:
    if head is not None:
        config, variables = select_head(config, variables, head)
    dtype = dtype or config.dtype
    enable_x64_if(dtype)
    config = config.replace(dtype=dtype)
    variables = jax.tree_util.tree_map(jnp.asarray, cast_variables(variables, dtype))
    return LoadedModel(config=config, variables=variables, module=MACE(config, backend), metadata=metadata or {})
