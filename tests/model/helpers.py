"""Small jaxtl-only models and graphs for model tests (no torch needed)."""

import jax
import numpy as np

from jaxtl.api import build_loaded_model
from jaxtl.model import MACEConfig
from jaxtl.model.mace import init_variables


def random_jaxtl_model(seed=0, **overrides):
    """A freshly initialised float64 jaxtl MACE with non-trivial E0s, scale and shift."""
    jax.config.update("jax_enable_x64", True)
    kwargs = dict(atomic_numbers=(1, 8, 29), r_max=4.0, num_bessel=6, hidden_irreps="8x0e+8x1o+8x2e",
                  max_ell=2, correlation=(3, 2), avg_num_neighbors=(6.0, 6.0), radial_MLP=(16, 16),
                  MLP_irreps="8x0e", dtype="float64")
    kwargs.update(overrides)
    config = MACEConfig(**kwargs)
    variables = init_variables(config, seed)
    variables = {"params": variables["params"], "constants": dict(variables["constants"])}
    H, Z = len(config.heads), config.num_elements
    variables["constants"]["atomic_energies"] = np.arange(1, Z + 1, dtype=float)[None].repeat(H, 0) * -1.5
    variables["constants"]["scale"] = np.full((H,), 1.3)
    variables["constants"]["shift"] = np.full((H,), 0.1)
    return build_loaded_model(config, variables)
