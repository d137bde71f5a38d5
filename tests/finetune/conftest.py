"""Fixtures: the real h2cu foundation (converted once, unverified, skipped when absent),
tiny random MACEs with and without ZBL, and small labelled structure files."""

import jax
import numpy as np
import pytest
from mirror import mirror_path, require

jax.config.update("jax_enable_x64", True)

H2CU = str(mirror_path("h2cu-mace"))  # the mace-torch file; tests reach it through the `h2cu` fixtures, which skip


@pytest.fixture(scope="session")
def h2cu_dir(tmp_path_factory):
    h2cu = require("h2cu-mace")
    pytest.importorskip("torch")
    from jaxtl.convert.convert import convert_file

    out = tmp_path_factory.mktemp("h2cu") / "model"
    convert_file(h2cu, out, dtype="float64", check=False, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def h2cu(h2cu_dir):
    from jaxtl.model_io import load_model_files

    config, variables, _ = load_model_files(h2cu_dir)
    return config, variables


def tiny_model(pair_repulsion=False, atomic_numbers=(1, 29), hidden="4x0e+4x1o"):
    """(config, params) of a small MACE; params are random numbers of the right shapes
    (`jax.eval_shape` of the init: labels need only the tree, and a real init is slow)."""
    from ase.build import bulk

    from jaxtl.convert.verify import jaxtl_batch
    from jaxtl.model import MACE, MACEConfig

    config = MACEConfig(
        atomic_numbers=atomic_numbers,
        r_max=3.0,
        num_bessel=4,
        max_ell=2,
        hidden_irreps=hidden,
        MLP_irreps="4x0e",
        correlation=2,
        radial_MLP=(8, 8),
        avg_num_neighbors=8.0,
        pair_repulsion=pair_repulsion,
        dtype="float64",
    )
    batch = jaxtl_batch([bulk("Cu", "fcc", a=3.6)], config.r_max)
    shapes = jax.eval_shape(MACE(config).init, jax.random.PRNGKey(0), batch.graph)["params"]
    rng = np.random.default_rng(0)
    return config, jax.tree.map(lambda s: rng.normal(size=s.shape), shapes)


def labelled_structures(n=8, seed=0, symbols=("Cu", "H")):
    """Small periodic Cu-H cells labelled with ASE's EMT (REF_energy, REF_forces)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        if len(symbols) > 1 and i % 2 == 0:
            atoms[int(rng.integers(len(atoms)))].symbol = symbols[1]
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        frames.append(atoms)
    return frames


def write_train_valid(folder, n_train: int):
    """`folder`/train.xyz (`n_train` labelled structures) and valid.xyz (2); returns `folder`."""
    import ase.io

    ase.io.write(folder / "train.xyz", labelled_structures(n_train, seed=0))
    ase.io.write(folder / "valid.xyz", labelled_structures(2, seed=1))
    return folder


def ft_config(foundation, train_file, strategy=None, train=None, e0s=None, **data):
    """A `FinetuneConfig` of `foundation` on `train_file`: `data` holds `DataConfig` fields
    (batch_size 5 and its seed the training seed unless given; evaluation batches as
    large as training ones)."""
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig
    from jaxtl.train import TrainConfig
    from jaxtl.train.data import DataConfig

    train = train or TrainConfig()
    data = {k: str(v) if k.endswith("_file") and v is not None else v for k, v in data.items()}
    data.setdefault("batch_size", 5)
    data.setdefault("valid_batch_size", data["batch_size"])
    data.setdefault("seed", train.seed)
    return FinetuneConfig(
        FoundationConfig(str(foundation)),
        DataConfig(train_file=str(train_file), **data),
        strategy or StrategyConfig(),
        train,
        e0s,
    )
