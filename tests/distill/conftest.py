"""Fixtures of the distillation tests: a tiny random H/Cu teacher."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "model"))
from helpers import random_jaxtl_model  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    """A tiny random float64 H/Cu MACE standing in for a real teacher."""
    return random_jaxtl_model(
        seed=3,
        atomic_numbers=(1, 29),
        r_max=4.0,
        hidden_irreps="4x0e+4x1o",
        max_ell=1,
        correlation=(2,),
        num_interactions=1,
        avg_num_neighbors=(12.0,),
        radial_MLP=(8,),
    )


@pytest.fixture(scope="module")
def teacher_dir(teacher, tmp_path_factory):
    """The tiny teacher as a jaxtl model folder (what a DistillConfig names)."""
    from jaxtl.model_io import save_model

    folder = tmp_path_factory.mktemp("teacher") / "model"
    save_model(folder, teacher.config, teacher.variables)
    return folder
