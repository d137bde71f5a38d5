"""Fine-tuning strategies (LoRA, magnitude adapters, replay) on a tiny random MACE.

Checks: every strategy starts exactly at the foundation; after a few training steps
LoRA and magnitude models have moved, are still equivariant (rotated input: same
energy, rotated forces), keep their base weights bit for bit, and their merged
model equals the unmerged one to round-off; bad input gives clear errors; the CLI.
"""

import dataclasses

import ase.io
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ft_config, labelled_structures, tiny_model, write_train_valid

from jaxtl.finetune import FROZEN, STRATEGIES, Strategy, StrategyConfig, finetune, make_strategy
from jaxtl.finetune.strategies import ADAPTERS, BASE
from jaxtl.graph import DataError
from jaxtl.train import TrainConfig

QUIET = dict(log=lambda _: None)
CFG = TrainConfig(dtype="float64", progress_bar=False, plot=False)
TRAIN_2 = CFG.replace(max_num_epochs=2, optimizer=dataclasses.replace(CFG.optimizer, lr=0.01))


@pytest.fixture(scope="module")
def foundation(tmp_path_factory):
    """(folder, config, variables) of a tiny random MACE saved as a model folder."""
    from jaxtl.model.mace import init_variables
    from jaxtl.model_io import save_model

    config, _ = tiny_model()
    variables = init_variables(config)
    folder = save_model(tmp_path_factory.mktemp("foundation") / "model", config, variables)
    return folder, config, variables


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_train_valid(tmp_path_factory.mktemp("data"), 6)


@pytest.fixture(scope="module")
def predict(foundation):
    from jaxtl.model import MACE, make_predict

    return make_predict(MACE(foundation[1]))


def probe():
    """A small Cu-H cell with no symmetry left, and a random rotation."""
    atoms = labelled_structures(1, seed=7)[0]
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))[0]
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    rotated.cell = atoms.cell.array @ rotation.T
    return atoms, rotated, rotation


def energy_forces(predict_fn, variables, atoms_list, r_max):
    from jaxtl.convert.verify import jaxtl_batch

    out = predict_fn(variables, jaxtl_batch(atoms_list, r_max).graph, False)
    n = sum(len(a) for a in atoms_list)
    return np.asarray(out["energy"])[: len(atoms_list)], np.asarray(out["forces"])[:n]


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------- step 0


def test_every_strategy_starts_at_the_foundation(foundation, predict):
    _, config, variables = foundation
    params = variables["params"]
    atoms = labelled_structures(2, seed=5)
    reference = energy_forces(jax.jit(predict, static_argnums=2), variables, atoms, config.r_max)
    seen = set()
    for name in STRATEGIES + ("magnitude+lora",):
        strategy = make_strategy(name, lora_rank=2) if "lora" in name else make_strategy(name)
        tree = strategy.init(params, seed=1)
        assert leaves_equal(strategy.materialise(tree), params), name  # bit for bit
        kinds = tuple(r.kind for r in strategy.reparametrisations)
        if kinds in seen or len(kinds) > 1:
            continue  # one model call per kind of tree is enough (each call compiles)
        seen.add(kinds)
        wrapped = jax.jit(strategy.reparametrise(predict), static_argnums=2)
        e, f = energy_forces(wrapped, {**variables, "params": tree}, atoms, config.r_max)
        np.testing.assert_array_equal(e, reference[0])
        np.testing.assert_array_equal(f, reference[1])


def test_labels_freeze_the_base_and_train_adapters(foundation):
    from jaxtl.finetune.freeze import map_paths

    params = foundation[2]["params"]
    strategy = make_strategy("lora", lora_rank=2, adapter_patterns=["products_*/linear/*"])
    tree = strategy.init(params)
    labels = strategy.labels(tree, map_paths(lambda _: "trainable", params))
    # adapted weights are frozen even where the base labels would train them
    assert labels[BASE]["products_0"]["linear"]["0e"] == FROZEN
    assert labels[BASE]["interactions_0"]["linear"]["0e"] == "trainable"
    assert set(jax.tree.leaves(labels[ADAPTERS])) == {"trainable"}
    assert set(tree[ADAPTERS]["lora"]) == {"products_0", "products_1"}
    assert tree[ADAPTERS]["lora"]["products_0"]["linear"]["1o"]["A"].shape == (4, 2)
    assert not np.any(tree[ADAPTERS]["lora"]["products_0"]["linear"]["1o"]["B"])
    # element-dependent weights get one pair of factors per element
    per_element = make_strategy("lora", lora_rank=2, adapter_patterns=["interactions_0/skip_tp"]).init(params)
    factors = per_element[ADAPTERS]["lora"]["interactions_0"]["skip_tp"]["0e"]
    assert factors["A"].shape == (2, 4, 2) and factors["B"].shape == (2, 2, 4)


# ---------------------------------------------------------------- training


def check_trained(result, foundation, predict, kind):
    """Moved, base bit-identical, merged == unmerged, equivariant."""
    import jaxtl

    _, config, variables = foundation
    assert result.frozen_unchanged
    tree = jax.tree.map(np.asarray, result.train.variables["params"])
    assert leaves_equal(tree[BASE], variables["params"])
    init = result.strategy.init(variables["params"], seed=CFG.seed)
    assert not leaves_equal(tree[ADAPTERS][kind], init[ADAPTERS][kind])  # the adapters moved
    model = jaxtl.load_model(result.model_dir)  # merged: a plain jaxtl model
    assert jax.tree.structure(model.params) == jax.tree.structure(variables["params"])
    assert not leaves_equal(model.params, variables["params"])

    atoms, rotated, rotation = probe()
    constants = result.train.variables["constants"]
    unmerged = energy_forces(
        jax.jit(result.strategy.reparametrise(predict), static_argnums=2),
        {"params": tree, "constants": constants},
        [atoms, rotated],
        config.r_max,
    )
    merged = energy_forces(model._predict, model.variables, [atoms, rotated], config.r_max)
    np.testing.assert_allclose(merged[0], unmerged[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(merged[1], unmerged[1], rtol=0, atol=1e-10)
    (e, e_rot), forces = merged[0], merged[1]
    n = len(atoms)
    np.testing.assert_allclose(e_rot, e, rtol=0, atol=1e-9)
    np.testing.assert_allclose(forces[n:], forces[:n] @ rotation.T, rtol=0, atol=1e-9)
    # the forces moved too (energies differ anyway: the E0s were refitted)
    before = energy_forces(model._predict, variables, [atoms, rotated], config.r_max)[1]
    assert np.abs(before - forces).max() > 1e-6


def test_replay_lora_trains_moves_and_stays_equivariant(foundation, data, predict, tmp_path):
    folder, config, variables = foundation
    strategy = StrategyConfig("replay+lora", lora_rank=2, lora_alpha=4.0, replay_size=2, replay_weight=0.5)
    config = ft_config(folder, data / "train.xyz", strategy, TRAIN_2, batch_size=8, valid_file=data / "valid.xyz")
    result = finetune(config, tmp_path, **QUIET)
    check_trained(result, foundation, predict, "lora")
    assert result.n_replay == 2 and "replay" in result.train.metrics["train"]
    report = result.report
    assert report.n_trainable == report.n_adapter > 0 and report.state_bytes < report.state_bytes_naive
    # frozen base weights hold no optimiser state: AMSGrad's 3 moments of the adapters (+ step counters)
    assert 3 * 8 * report.n_adapter <= report.state_bytes < 3 * 8 * report.n_adapter + 1024
    meta = __import__("jaxtl").load_model(result.model_dir).metadata["finetune"]
    assert meta["strategy"]["name"] == "replay+lora" and meta["n_replay"] == 2


def test_magnitude_trains_moves_and_stays_equivariant(foundation, data, predict, tmp_path):
    folder, *_ = foundation
    config = ft_config(
        folder, data / "train.xyz", StrategyConfig("magnitude"), TRAIN_2, batch_size=8, valid_file=data / "valid.xyz"
    )
    result = finetune(config, tmp_path, **QUIET)
    check_trained(result, foundation, predict, "magnitude")
    # one scale per output channel of each irrep block of the chosen linears
    scales = result.train.variables["params"][ADAPTERS]["magnitude"]
    assert set(scales) == {"interactions_0", "interactions_1", "products_0", "products_1"}
    assert np.shape(scales["products_0"]["linear"]["1o"]["scale"]) == (4,)


def test_pseudolabels_are_the_foundation_on_the_new_reference(foundation):
    from jaxtl.api import build_loaded_model
    from jaxtl.finetune import Replay, pseudolabel, replay_structures
    from jaxtl.graph.io import configuration_from_atoms

    _, config, variables = foundation
    train = [configuration_from_atoms(a) for a in labelled_structures(3, seed=4)]
    replay = Replay(size=4, weight=0.25, rattle=0.1, seed=2)
    structures = replay_structures(replay, train, config.atomic_numbers)
    assert len(structures) == 4 and structures[0][0].positions.shape[0] == train[0].n_atoms
    again = replay_structures(replay, train, config.atomic_numbers)
    assert all(np.array_equal(a.positions, b.positions) for (a, _), (b, _) in zip(structures, again))
    assert not any(np.allclose(a.positions, c.positions) for a, _ in structures for c in train)

    teacher = build_loaded_model(config, variables)
    e0 = np.asarray(variables["constants"]["atomic_energies"])[0]
    shift = np.array([0.5, -2.0])  # per element of config.atomic_numbers (H, Cu)
    same = pseudolabel(teacher, structures, replay, "Default", e0, e0)
    moved = pseudolabel(teacher, structures, replay, "Default", e0, e0 + shift)
    for a, b, (atoms, _) in zip(same, moved, structures):
        expected = sum(shift[list(config.atomic_numbers).index(z)] for z in atoms.numbers)
        assert b.energy - a.energy == pytest.approx(expected, abs=1e-9)
        np.testing.assert_array_equal(a.forces, b.forces)
        assert b.weight == 0.25 and b.config_type == "replay"
    reference = energy_forces(teacher._predict, teacher.variables, [structures[0][0]], config.r_max)
    assert same[0].energy == pytest.approx(float(reference[0][0]), abs=1e-9)
    np.testing.assert_allclose(same[0].forces, reference[1], atol=1e-9)


# ---------------------------------------------------------------- bad input


def test_errors(foundation, data, tmp_path):
    folder, _, variables = foundation
    params = variables["params"]
    with pytest.raises(ValueError, match=r"pattern 'interaction_\*' matches no parameter"):
        make_strategy("lora", adapter_patterns=["interaction_*"]).init(params)
    with pytest.raises(ValueError, match=r"rank 8 is larger than the dimensions \(4, 4\)"):
        make_strategy("lora", lora_rank=8, adapter_patterns=["products_0/linear"]).init(params)
    with pytest.raises(ValueError, match=r"rank 2 is larger than the dimensions \(4, 1\)"):
        make_strategy("lora", lora_rank=2, adapter_patterns=["readouts_*"]).init(params)
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("adapters")
    with pytest.raises(ValueError, match="need a lora strategy"):
        make_strategy("replay", lora_rank=2)
    with pytest.raises(ValueError, match="need a replay strategy"):
        make_strategy("lora", replay_weight=0.5)
    with pytest.raises(ValueError, match="naive trains every weight"):
        finetune(
            ft_config(folder, data / "train.xyz", StrategyConfig("naive", freeze=6)),
            tmp_path / "n",
            dry_run=True,
            **QUIET,
        )
    alien = labelled_structures(2, seed=2, symbols=("Cu", "Ni"))
    ase.io.write(tmp_path / "ni.xyz", alien)
    with pytest.raises(DataError, match=r"replay set: .*ni.xyz, frame 0: element Ni"):
        finetune(
            ft_config(folder, data / "train.xyz", StrategyConfig("replay", replay_files=[tmp_path / "ni.xyz"])),
            tmp_path / "r",
            dry_run=True,
            **QUIET,
        )


def test_dry_run_reports_each_strategy(foundation, data, tmp_path):
    folder, _, variables = foundation
    n_foundation = sum(np.size(x) for x in jax.tree.leaves(variables["params"]))
    counts = {}
    for name in STRATEGIES:
        kw = dict(lora_rank=2) if "lora" in name else {}
        result = finetune(
            ft_config(folder, data / "train.xyz", StrategyConfig(name, **kw)), tmp_path / name, dry_run=True, **QUIET
        )
        assert isinstance(result.strategy, Strategy) and result.model_dir is None
        counts[name] = result.report.n_trainable
        assert result.report.state_bytes <= result.report.state_bytes_naive
    assert counts["naive"] == counts["freeze"] == counts["replay"] == n_foundation
    assert 0 < counts["magnitude"] < counts["lora"] == counts["replay+lora"] < n_foundation
    frozen = finetune(
        ft_config(folder, data / "train.xyz", StrategyConfig(freeze=6)), tmp_path / "f6", dry_run=True, **QUIET
    )
    assert frozen.report.n_trainable < n_foundation
    # lora on top of freezing options: readouts train in full, the rest through adapters
    lora = StrategyConfig("lora", lora_rank=2, freeze=6, adapter_patterns=["interactions_*/linear/*"])
    mixed = finetune(ft_config(folder, data / "train.xyz", lora), tmp_path / "mix", dry_run=True, **QUIET)
    assert "base/readouts_0/linear/0e" in mixed.report.trainable_paths()
    assert "base/interactions_0/linear/0e" in mixed.report.frozen_paths()


# ---------------------------------------------------------------- CLI


def test_cli_lora_dry_run_and_tiny_run(foundation, data, tmp_path, capsys):
    from jaxtl.calculator import MACECalculator
    from jaxtl.cli import main

    folder, *_ = foundation
    common = [
        "finetune",
        "--foundation",
        str(folder),
        "--train",
        str(data / "train.xyz"),
        "--valid",
        str(data / "valid.xyz"),
        "--strategy",
        "lora",
        "--lora-rank",
        "2",
        "--adapter-patterns",
        "interactions_*/linear/*",
        "--adapter-patterns",
        "readouts_1/linear_1",
        "--dtype",
        "float64",
        "--batch-size",
        "8",
    ]
    assert main(common + ["--dry-run", "--out", str(tmp_path / "dry")]) == 0
    out = capsys.readouterr().out
    assert "adapters/lora/interactions_1/linear/1o/A" in out and "adapters: lora on 7 weights" in out
    assert "strategy lora: trains" in out and "optimiser state" in out
    assert not (tmp_path / "dry" / "model").exists()

    assert main(common + ["--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "frozen weights unchanged: True" in out and "strategy lora: trains" in out
    atoms = labelled_structures(1, seed=9)[0]
    atoms.calc = MACECalculator(str(tmp_path / "run" / "model"))
    assert np.isfinite(atoms.get_potential_energy())
    assert jnp.all(jnp.isfinite(jnp.asarray(atoms.get_forces())))


def test_lora_run_resumes_exactly(foundation, data, tmp_path):
    """An adapter run stopped after one epoch and resumed ends where an uninterrupted run ends."""
    folder, *_ = foundation
    config = ft_config(
        folder,
        data / "train.xyz",
        StrategyConfig("lora", lora_rank=2),
        TRAIN_2,
        batch_size=8,
        valid_file=data / "valid.xyz",
    )
    whole = finetune(config, tmp_path / "whole", **QUIET)
    one_epoch = config.replace(train=config.train.replace(max_num_epochs=1))
    finetune(one_epoch, tmp_path / "split", **QUIET)
    with pytest.raises(ValueError, match=r"strategy.lora_rank differ"):
        finetune(config.replace(strategy=StrategyConfig("lora", lora_rank=3)), tmp_path / "split", resume=True, **QUIET)
    resumed = finetune(config, tmp_path / "split", resume=True, **QUIET)
    assert leaves_equal(
        jax.tree.map(np.asarray, resumed.train.variables["params"]),
        jax.tree.map(np.asarray, whole.train.variables["params"]),
    )
    import jaxtl

    merged_whole, merged_resumed = jaxtl.load_model(whole.model_dir), jaxtl.load_model(resumed.model_dir)
    assert leaves_equal(merged_resumed.params, merged_whole.params)
    assert [r["epoch"] for r in resumed.train.history if "time_s" in r] == [0, 1]


def test_adapter_model_is_written_once_merged_and_atomically(foundation, data, tmp_path, monkeypatch):
    """With adapters OUT/model is written in one `save_model` call, merged; a crash during
    a later write leaves the folder as it was (temp folder + rename), loadable."""
    import sys

    import jaxtl
    import jaxtl.model_io as model_io

    ft_module = sys.modules["jaxtl.finetune.finetune"]  # the package's `finetune` is the function

    folder, *_ = foundation
    writes = []
    real_save = ft_module.save_model

    def counting_save(directory, config, variables, metadata=None):
        writes.append(sorted(variables["params"]))
        return real_save(directory, config, variables, metadata)

    monkeypatch.setattr(ft_module, "save_model", counting_save)
    config = ft_config(
        folder,
        data / "train.xyz",
        StrategyConfig("magnitude"),
        TRAIN_2.replace(max_num_epochs=1),
        batch_size=8,
        valid_file=data / "valid.xyz",
    )
    result = finetune(config, tmp_path, **QUIET)
    assert len(writes) == 1 and BASE not in writes[0] and ADAPTERS not in writes[0]
    before = jaxtl.load_model(result.model_dir)

    class Crash(RuntimeError):
        pass

    def crash(*args, **kwargs):
        raise Crash("disk full")

    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(model_io, "_checkpointer", lambda: type("C", (), {"save": crash})())
        model_io.save_model(result.model_dir, before.config, jax.tree.map(lambda x: 0 * x, before.variables))
    after = jaxtl.load_model(result.model_dir)
    assert leaves_equal(after.params, before.params)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".model")) == []
