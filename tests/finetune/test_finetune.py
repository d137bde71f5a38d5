"""`finetune` end to end on the h2cu foundation with EMT-labelled Cu-H cells."""

import ase.io
import jax
import numpy as np
import pytest
from conftest import ft_config, labelled_structures, write_train_valid

from jaxtl.finetune import FROZEN, StrategyConfig, finetune
from jaxtl.graph import DataError
from jaxtl.train import TrainConfig

QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_train_valid(tmp_path_factory.mktemp("data"), 8)


def test_finetune_f5_writes_a_loadable_model(h2cu_dir, h2cu, data, tmp_path):
    import jaxtl

    _, foundation = h2cu
    cfg = TrainConfig(dtype="float64", progress_bar=False, plot=False)
    config = ft_config(
        h2cu_dir,
        data / "train.xyz",
        StrategyConfig(freeze=5),
        cfg.replace(max_num_epochs=2),
        batch_size=4,
        valid_file=data / "valid.xyz",
    )
    result = finetune(config, tmp_path, **QUIET)
    assert result.frozen_unchanged and result.report.n_trainable == 1120
    model = jaxtl.load_model(result.model_dir)
    labels = jax.tree.leaves(result.labels)
    for before, after, label in zip(jax.tree.leaves(foundation["params"]), jax.tree.leaves(model.params), labels):
        if label == FROZEN:
            assert np.array_equal(before, np.asarray(after))
        else:
            assert not np.array_equal(before, np.asarray(after))
    # The E0s were refitted on the EMT data (different reference from the foundation's).
    np.testing.assert_array_equal(np.asarray(model.constants["atomic_energies"]), result.atomic_energies)
    assert not np.allclose(result.atomic_energies, foundation["constants"]["atomic_energies"])
    assert model.metadata["finetune"]["n_frozen"] == 30112
    assert result.steps_per_s > 0


def test_dry_run_and_unknown_element(h2cu_dir, data, tmp_path):
    result = finetune(
        ft_config(h2cu_dir, data / "train.xyz", StrategyConfig(freeze=6), e0s="foundation"),
        tmp_path / "dry",
        dry_run=True,
        **QUIET,
    )
    assert result.model_dir is None and result.report.n_trainable == 288
    assert not (tmp_path / "dry" / "model").exists()
    alien = labelled_structures(2, seed=2, symbols=("Cu", "Ni"))
    ase.io.write(tmp_path / "ni.xyz", alien)
    with pytest.raises(DataError, match=r"ni.xyz, frame 0: element Ni"):
        finetune(
            ft_config(h2cu_dir, tmp_path / "ni.xyz", StrategyConfig(freeze=6)), tmp_path / "ni", dry_run=True, **QUIET
        )
