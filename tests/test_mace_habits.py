"""A mace-torch user's data and habits, as they are: isolated atoms with only an energy,
energy-only frames, two config_types, a head key, a mace run_train YAML, mace's E0s
syntax, resume from the run folder alone."""

import subprocess
import sys

import ase.io
import jax
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from jaxtl import cli
from jaxtl.cli import common
from jaxtl.graph import DataError, GraphDataset, pad_batch
from jaxtl.settings import save_run_config
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig, Splits, read_splits
from jaxtl.train.loss import LossConfig, compute_loss
from jaxtl.train.run import head_e0s

jax.config.update("jax_enable_x64", True)  # exact loss comparisons

ISOLATED = {29: -0.5, 1: -1.25}  # eV, deliberately far from what a fit of the EMT energies gives

# What mace-torch's run_train reads (its names and value forms); device, name,
# error_table and eval_interval have no jaxtl counterpart and must be named as ignored.
MACE_YAML = """\
name: tiny
seed: 3
device: cpu
train_file: {train}
valid_fraction: 0.2
test_file: {test}
E0s: average
energy_key: REF_energy
forces_key: REF_forces
config_type_weights: '{{"Default": 1.0, "bulk": 2.0}}'
r_max: 3.0
num_radial_basis: 4
num_channels: 4
max_L: 0
max_ell: 1
correlation: 2
num_interactions: 2
MLP_irreps: 4x0e
radial_MLP: '[8, 8]'
batch_size: 4
max_num_epochs: 2
lr: 0.01
scheduler: ReduceLROnPlateau
ema: true
ema_decay: 0.99
swa: true
start_swa: 1
default_dtype: float64
error_table: PerAtomRMSE
eval_interval: 1
"""


def mace_frames(seed=0, n=10):
    """IsolatedAtom Cu and H (energy only), Cu/CuH cells: 'bulk' with forces, 'md' energy only.
    Every frame names its head in the `head` info key."""
    rng = np.random.default_rng(seed)
    frames = []
    for z, e in ISOLATED.items():
        atoms = Atoms(numbers=[z], positions=[[0, 0, 0]])
        atoms.info.update(REF_energy=e, config_type="IsolatedAtom", head="pbe")
        frames.append(atoms)
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        if i % 2 == 0:
            atoms[int(rng.integers(len(atoms)))].symbol = "H"
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        atoms.info.update(REF_energy=energy, head="pbe", config_type="bulk" if i < 6 else "md")
        if i < 6:
            atoms.arrays["REF_forces"] = forces
        frames.append(atoms)
    return frames


def jaxtl(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "jaxtl.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mace_data")
    ase.io.write(folder / "train.xyz", mace_frames(0), format="extxyz")
    ase.io.write(folder / "test.xyz", mace_frames(1, 4)[2:], format="extxyz")
    (folder / "mace.yaml").write_text(MACE_YAML.format(train=folder / "train.xyz", test=folder / "test.xyz"))
    return folder


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """`jaxtl train --config mace.yaml --out RUN`: 2 epochs (stage two from epoch 1)."""
    out = tmp_path_factory.mktemp("run") / "run"
    proc = jaxtl("train", "--config", data / "mace.yaml", "--out", out)
    return out, proc


def test_mace_yaml_trains_the_mace_dataset(run):
    from jaxtl.model_io import load_model_files

    out, proc = run
    for name in ("device", "error_table", "eval_interval", "name"):
        assert name in proc.stderr.split("ignores these settings:")[1].splitlines()[0]
    config, variables, _ = load_model_files(out / "model")
    assert config.heads == ("pbe",) and config.hidden_irreps == "4x0e" and config.num_bessel == 4
    # the IsolatedAtom frames give the E0s (they win over "average", as in mace-torch)
    e0 = np.asarray(variables["constants"]["atomic_energies"])[0]
    assert dict(zip(config.atomic_numbers, e0.tolist())) == ISOLATED
    records = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert len(records) == 2 and '"stage": 2' in records[1]


def test_written_configs_read_back_as_they_are(run, data, tmp_path):
    out, _ = run
    new = ["--out", tmp_path / "again"]
    from_mace = cli.parse_args(["train", "--config", str(data / "mace.yaml"), *map(str, new)])
    from_run = cli.parse_args(["train", "--config", str(out / "run_config.yaml"), *map(str, new)])
    for build in (common.train_config, common.data_config):
        assert build(from_run) == build(from_mace)
    assert from_run.hidden_irreps == "4x0e" and from_run.radial_mlp == [8, 8] and from_run.e0s == "average"
    # the train_config.yaml the training loop writes, passed back as it is
    from_loop = cli.parse_args(
        ["train", "--config", str(out / "train_config.yaml"), "--train", "x.xyz", *map(str, new)]
    )
    assert common.train_config(from_loop) == TrainConfig.load(out / "train_config.yaml")


def test_resume_from_the_run_folder_alone(run):
    out, _ = run
    args = cli.parse_args(["train", "--resume", str(out)])
    assert args.resume is True and args.out == str(out)
    assert (args.hidden_irreps, args.num_bessel, args.r_max, args.dtype, args.seed) == ("4x0e", 4, 3.0, "float64", 3)
    assert args.config_type_weights == {"Default": 1.0, "bulk": 2.0}
    proc = jaxtl("train", "--resume", out, "--epochs", 3)  # one more epoch, from the folder alone
    assert "resumed" in proc.stderr + proc.stdout
    records = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert len(records) == 3


def test_a_conflicting_flag_on_resume_is_named(run, capsys):
    out, _ = run
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--resume", str(out), "--hidden-irreps", "8x0e"])
    err = capsys.readouterr().err
    assert "--hidden-irreps '8x0e' conflicts with the resumed run's hidden_irreps = '4x0e'" in err
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--resume", str(out), "--no-ema"])
    assert "--no-ema False conflicts with the resumed run's ema = True" in capsys.readouterr().err
    # the same value again is no conflict
    assert cli.parse_args(["train", "--resume", str(out), "--seed", "3"]).seed == 3


def _batch_and_prediction(path, config_type_weights=None):
    """All structures of `path` (IsolatedAtom frames set apart) in one padded batch, with
    a fixed random prediction."""
    splits = read_splits(DataConfig(train_file=str(path), valid_fraction=0.0, config_type_weights=config_type_weights))
    configs = sorted(splits.train, key=lambda c: c.index)
    items = GraphDataset(configs, 3.0, progress=False).items
    n_nodes = sum(c.n_atoms for c in configs)
    batch = pad_batch(items, n_nodes + 1, sum(len(i.graph.senders) for i in items), len(items) + 1, r_max=3.0)
    rng = np.random.default_rng(0)
    pred = {
        "energy": rng.normal(size=len(items) + 1) * 10.0 + batch.labels.energy,
        "forces": rng.normal(size=(n_nodes + 1, 3)),
    }
    return configs, batch, pred


def test_energy_only_frames_add_no_force_loss(data, tmp_path):
    """The md frames (no REF_forces) hold garbage forces in a second file, with
    config_forces_weight=0: the loss is the same, to the last bit."""
    configs, batch, pred = _batch_and_prediction(data / "train.xyz")
    assert all(c.forces_weight == 0 for c in configs if c.config_type == "md")
    garbage = []
    for atoms in ase.io.read(data / "train.xyz", index=":"):
        if atoms.info.get("config_type") == "md":
            atoms.arrays["REF_forces"] = np.full((len(atoms), 3), 1e4)
            atoms.info["config_forces_weight"] = 0.0
        garbage.append(atoms)
    ase.io.write(tmp_path / "garbage.xyz", garbage, format="extxyz")
    _, batch_g, _ = _batch_and_prediction(tmp_path / "garbage.xyz")
    assert np.abs(batch_g.labels.forces).max() == 1e4  # the garbage is in the batch
    cfg = LossConfig()
    assert float(compute_loss(pred, batch_g.labels, batch_g.graph, cfg)) == float(
        compute_loss(pred, batch.labels, batch.graph, cfg)
    )
    # but it counts when its weight is not zero
    for atoms in garbage:
        atoms.info.pop("config_forces_weight", None)
    ase.io.write(tmp_path / "counted.xyz", garbage, format="extxyz")
    _, batch_c, _ = _batch_and_prediction(tmp_path / "counted.xyz")
    assert float(compute_loss(pred, batch_c.labels, batch_c.graph, cfg)) > 1e3 * float(
        compute_loss(pred, batch.labels, batch.graph, cfg)
    )


def test_config_type_weights_scale_their_structures_loss(data):
    """The loss is linear in the weight of the bulk structures: w=2 adds what w=1 adds over w=0."""
    cfg = LossConfig()
    loss = {}
    for w in (0.0, 1.0, 2.0):
        _, batch, pred = _batch_and_prediction(data / "train.xyz", {"bulk": w})
        loss[w] = float(compute_loss(pred, batch.labels, batch.graph, cfg))
    assert loss[1.0] > loss[0.0] > 0  # md frames still count at bulk weight 0
    np.testing.assert_allclose(loss[2.0] - loss[1.0], loss[1.0] - loss[0.0], rtol=1e-10)
    with pytest.raises(DataError, match="config_type 'Bulk', which no structure of"):
        _batch_and_prediction(data / "train.xyz", {"Bulk": 2.0})


def test_each_head_gets_its_isolated_atoms(data):
    frames = read_splits(DataConfig(train_file=str(data / "train.xyz"), valid_fraction=0.0))
    other = [c.__class__(**{**c.__dict__, "head": "scan"}) for c in frames.train]
    shifted = [c.__class__(**{**c.__dict__, "head": "scan", "energy": c.energy - 1.0}) for c in frames.isolated]
    splits = Splits(frames.train + other, [], [], {}, frames.isolated + shifted)
    e0, sources = head_e0s(None, splits, ("pbe", "scan"), (1, 29))
    np.testing.assert_array_equal(e0, [[-1.25, -0.5], [-2.25, -1.5]])
    assert sources == {"pbe": "isolated", "scan": "isolated"}


def test_bad_e0s_and_missing_e0_are_clear_errors(data, tmp_path):
    base = ["train", "--train", str(data / "train.xyz"), "--out", str(tmp_path / "r")]
    with pytest.raises(ValueError, match=r"E0s '\{1: -1.25, 29: \}' cannot be read"):
        common.data_config(cli.parse_args([*base, "--E0s", "{1: -1.25, 29: }"]))
    assert common.data_config(cli.parse_args([*base, "--e0s", "{1: -1.25, 29: -0.5}"]))
    splits = read_splits(DataConfig(train_file=str(data / "train.xyz")))
    with pytest.raises(DataError, match=r"no E0 for Cu \(Z=29\) in the E0s from --E0s"):
        head_e0s("{1: -1.25}", splits, ("pbe",), (1, 29))
    with pytest.raises(SystemExit):
        cli.parse_args(["train", "--resume", str(tmp_path / "nothing")])


def test_mace_yaml_settings_translate():
    from jaxtl.mace_config import hidden_irreps, translate

    assert hidden_irreps(128, 2) == "128x0e + 128x1o + 128x2e"
    settings, ignored = translate(
        {
            "max_num_epochs": 5,
            "swa": "True",
            "start_swa": 3,
            "scheduler": "ExponentialLR",
            "num_channels": 8,
            "max_L": 1,
            "radial_MLP": "[16, 16]",
            "E0s": "{1: -13.6}",
            "foundation_model": "small",
            "device": "cuda",
            "enable_cueq": True,
        },
        known={"epochs", "stage_two", "start_stage_two", "scheduler", "hidden_irreps", "radial_mlp", "e0s", "backend"},
    )
    assert settings == {
        "epochs": 5,
        "stage_two": True,
        "start_stage_two": 3,
        "scheduler": "exponential",
        "hidden_irreps": "8x0e + 8x1o",
        "radial_mlp": [16, 16],
        "e0s": "{1: -13.6}",
        "backend": "cueq",
    }
    assert ignored == ["device", "foundation_model"]
    # --swa without --start_swa: mace-torch's start, max(1, epochs // 4 * 3)
    settings, _ = translate({"swa": True, "max_num_epochs": 100}, known={"stage_two", "start_stage_two", "epochs"})
    assert settings["start_stage_two"] == 75
    # jaxtl's own default without a config: the last 40 % of the epochs, EMA on
    args = cli.parse_args(["train", "--train", "x.xyz", "--out", "y", "--epochs", "200"])
    assert common.train_config(args).stage_two.start_epoch == 120 and common.train_config(args).ema
    off = common.train_config(cli.parse_args(["train", "--train", "x.xyz", "--out", "y", "--no-swa", "--no-ema"]))
    assert not off.stage_two.enabled and not off.ema


def test_finetune_resumes_from_its_folder_alone(data, tmp_path):
    out = tmp_path / "ft"
    args = cli.parse_args(
        [
            "finetune",
            "--foundation",
            str(data / "mace.yaml"),
            "--train",
            str(data / "train.xyz"),
            "--freeze",
            "6",
            "--E0s",
            "isolated",
            "--no-swa",
            "--out",
            str(out),
        ]
    )
    save_run_config(args, args.parser)
    resumed = cli.parse_args(["finetune", "--resume", str(out)])
    assert (resumed.freeze, resumed.e0s, resumed.stage_two, resumed.ema) == (6, "isolated", False, True)
    assert common.train_config(resumed) == common.train_config(args)
    with pytest.raises(SystemExit):
        cli.parse_args(["finetune", "--resume", str(out), "--freeze", "5"])
    with pytest.raises(SystemExit):  # a train run folder is not a finetune run
        cli.parse_args(["train", "--resume", str(out)])
