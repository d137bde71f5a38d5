"""A tiny foundation (random two-element one-layer MACE, saved as a model folder) and small
EMT-labelled Cu-H files: the pool, a test file and a test file with an element it lacks."""

import numpy as np
import pytest


def emt_cells(n: int, seed: int, other: str = "H"):
    """`n` 4-atom Cu cells, every other one with an `other` atom, rattled, with EMT labels."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        if i % 2 == 0:
            atoms[int(rng.integers(len(atoms)))].symbol = other
        atoms.rattle(0.08, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    return frames


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{"foundation": model folder, "pool": 20 structures, "test": 4, "alien_test": 4 with Ni}."""
    import ase.io

    from jaxtl.model import MACEConfig, init_variables
    from jaxtl.model_io import save_model

    root = tmp_path_factory.mktemp("lc_data")
    config = MACEConfig(
        atomic_numbers=(1, 29),
        r_max=3.0,
        num_bessel=4,
        max_ell=1,
        hidden_irreps="4x0e",
        num_interactions=1,
        MLP_irreps="4x0e",
        correlation=2,
        radial_MLP=(8, 8),
        avg_num_neighbors=8.0,
        dtype="float32",
    )
    save_model(root / "foundation", config, init_variables(config, seed=0))
    ase.io.write(root / "pool.xyz", emt_cells(20, seed=0))
    ase.io.write(root / "test.xyz", emt_cells(4, seed=1))
    ase.io.write(root / "alien_test.xyz", emt_cells(4, seed=2, other="Ni"))
    return {
        "foundation": root / "foundation",
        "pool": root / "pool.xyz",
        "test": root / "test.xyz",
        "alien_test": root / "alien_test.xyz",
    }
