"""Cells of 02_frozen_finetuning_aspirin.ipynb: frozen fine-tuning of the SPICE MACE on aspirin against scratch.

Built and executed by make_notebooks.py. The notebook runs a small study itself (with
JAXTL_FAST=1 tiny settings, the test suite); opened in a clone of the repository without
JAXTL_FAST it shows the saved full study (benchmarks/results/aspirin, made by
`python benchmarks/finetune_aspirin.py`) instead.
"""

INTRO = """\
# Frozen transfer learning: SPICE MACE -> rMD17 aspirin

The SPICE foundation model (a small MACE trained on SPICE, wB97M) is fine-tuned on aspirin (PBE, another
level of theory) with mace-torch's `--freeze 0/5/6` and a finer choice (only the embedding and the first
interaction frozen), against the same architecture trained from scratch, on growing training sets; all are
tested on the same held-out aspirin structures. Data and model come from `jaxtl.datasets` (a mirror
named by `JAXTL_DATA`, or checked downloads).

Without `JAXTL_FAST`, opened in a clone of the repository, the notebook shows the full study
(`benchmarks/finetune_aspirin.py`, hours on a CPU); anywhere else it runs the study below itself.
`JAXTL_FAST=1` runs tiny settings (the test suite): the numbers are then meaningless."""

SETUP = """\
import json, math, os, shutil, time
from pathlib import Path

import numpy as np
import ase.io
import jax

import jaxtl
import jaxtl.datasets

print('JAX devices:', jax.devices())
FAST = bool(os.environ.get('JAXTL_FAST'))
OUT = Path(os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')) / 'aspirin_frozen'
# the full study's saved results, when the notebook is opened in a clone of the repository
SAVED = next((d for d in (Path.cwd() / 'benchmarks/results/aspirin', Path.cwd().parent / 'benchmarks/results/aspirin')
              if (d / 'results.json').exists()), None)
LIVE = FAST or SAVED is None
if FAST:
    S = dict(n_test=10, sizes=(9,), steps=4, strategies=('f6', 'scratch'))
else:  # equal step budgets per size; minutes on a GPU
    S = dict(n_test=200, sizes=(50, 200, 800), steps=400, strategies=('f0', 'f5', 'f6', 'finer', 'scratch'))
print('running the study here' if LIVE else f'showing the saved full study in {os.path.relpath(SAVED)}')"""

STUDY_MD = """\
## The study

Every run at a size gets the same number of optimisation steps (batch 10), a cosine schedule and EMA;
fine-tuning refits the E0s to the aspirin energies (`average`) and trains at lr 0.005, scratch at 0.01."""

STUDY = """\
from jaxtl.convert.convert import convert_file
from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig
from jaxtl.train.optimizer import OptimizerConfig
from jaxtl.train.run import ScratchConfig, train_from_scratch

STRATEGY = {'f0': StrategyConfig(freeze=0), 'f5': StrategyConfig(freeze=5), 'f6': StrategyConfig(freeze=6),  # --freeze N
            'finer': StrategyConfig(freeze_patterns=('node_embedding*', 'interactions_0*'))}


def train_config(epochs, lr):
    return TrainConfig(max_num_epochs=epochs, seed=0, progress_bar=False, plot=False, ema=True, ema_decay=0.99,
                       optimizer=OptimizerConfig(lr=lr, scheduler='cosine', decay_epochs=epochs, min_lr_factor=0.05))


def subset(src, dst, n, seed=0):
    \"\"\"A fixed random subset of `n` frames of `src`, written to `dst`.\"\"\"
    frames = ase.io.read(src, ':')
    keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(dst, [frames[i] for i in keep], format='extxyz')
    return dst


def run_study():
    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run: the training loop refuses folders holding checkpoints
    OUT.mkdir(parents=True)
    foundation = OUT / 'foundation'
    convert_file(jaxtl.datasets.path('spice-mace'), foundation, dtype='float32', log=lambda *_: None)
    scratch_model = {k: v for k, v in jaxtl.load_model(foundation).config.to_dict().items()
                     if k not in ('atomic_numbers', 'avg_num_neighbors', 'dtype')}
    test = subset(jaxtl.datasets.path('rmd17-aspirin-test'), OUT / 'test.xyz', S['n_test'])
    rows = []
    for n_train in S['sizes']:
        # 10 % of each subset is held out for validation, so n_train structures train
        train = subset(jaxtl.datasets.path('rmd17-aspirin-train'), OUT / f'train_{n_train}.xyz', math.ceil(n_train / 0.9))
        epochs = max(1, math.ceil(S['steps'] / math.ceil(n_train / 10)))
        for name in S['strategies']:
            t0 = time.perf_counter()
            run = OUT / f'{name}_{n_train}'
            if name == 'scratch':
                data = DataConfig(train_file=str(train), test_file=str(test), batch_size=10, seed=0)
                metrics = train_from_scratch(ScratchConfig(data, scratch_model, train_config(epochs, 0.01)), run).metrics
                n_trainable = None
            else:
                data = DataConfig(train_file=str(train), test_file=str(test), batch_size=10)
                config = FinetuneConfig(FoundationConfig(str(foundation)), data, STRATEGY[name],
                                        train_config(epochs, 0.005), e0s='average')
                ft = finetune(config, run, log=lambda *_: None)
                metrics, n_trainable = ft.train.metrics, ft.report.n_trainable
            m = metrics['test']['all']
            rows.append(dict(n_train=n_train, strategy=name, n_trainable=n_trainable, epochs=epochs,
                             steps=epochs * math.ceil(n_train / 10), energy_rmse=m['energy_rmse'],
                             forces_rmse=m['forces_rmse'], wall_s=time.perf_counter() - t0))
            print(f"{name:8s} n={n_train:4d}: E {m['energy_rmse']:7.2f} meV/atom  F {m['forces_rmse']:6.1f} meV/A")
    lines = ['| n_train | strategy | trainable params | steps | E RMSE (meV/atom) | F RMSE (meV/A) | wall (s) |',
             '|---|---|---|---|---|---|---|']
    lines += [f"| {r['n_train']} | {r['strategy']} | {r['n_trainable'] or 'all'} | {r['steps']} | "
              f"{r['energy_rmse']:.2f} | {r['forces_rmse']:.1f} | {r['wall_s']:.0f} |" for r in rows]
    (OUT / 'results.json').write_text(json.dumps({'settings': S, 'runs': rows}, indent=2))
    (OUT / 'results.md').write_text('\\n'.join(lines) + '\\n')
    from jaxtl.train.plot import plot_data_efficiency

    plot_data_efficiency(rows, OUT / 'learning_curves.png', 'strategy',
                         'SPICE MACE -> rMD17 aspirin: frozen fine-tuning vs scratch (jaxtl)',
                         xlabel='aspirin training structures')
    return OUT


study = run_study() if LIVE else SAVED
saved = json.loads((study / 'results.json').read_text())
rows = saved['runs'] if isinstance(saved, dict) else saved
print((study / 'results.md').read_text())"""

PLOT = """\
from IPython.display import Image
Image(filename=str(study / 'learning_curves.png'))"""

CLAIM_MD = """\
The paper's claim, checked on these numbers: does fine-tuning on a fraction of the data match the same
architecture trained from scratch on all of it? The reference is the best scratch run at the largest size."""

CLAIM = """\
largest = max(r['n_train'] for r in rows)
scratch_all = [r for r in rows if r['strategy'].startswith('scratch') and r['n_train'] == largest]
if scratch_all:
    ref = min(scratch_all, key=lambda r: r['forces_rmse'])
    print(f"scratch on {largest} structures ({ref['strategy']}): "
          f"E {ref['energy_rmse']:.2f} meV/atom, F {ref['forces_rmse']:.1f} meV/A")
    for r in rows:
        if r['n_train'] < largest and not r['strategy'].startswith('scratch'):
            e_ok, f_ok = r['energy_rmse'] <= ref['energy_rmse'], r['forces_rmse'] <= ref['forces_rmse']
            verdict = 'matches (E and F)' if e_ok and f_ok else 'E only' if e_ok else 'F only' if f_ok else 'does not match'
            print(f"{r['strategy']:6s} on {r['n_train']:4d}: E {r['energy_rmse']:6.2f}  F {r['forces_rmse']:6.1f}  -> {verdict}")"""

CELLS = [
    ("md", INTRO),
    ("code", SETUP),
    ("md", STUDY_MD),
    ("code", STUDY),
    ("code", PLOT),
    ("md", CLAIM_MD),
    ("code", CLAIM),
]
