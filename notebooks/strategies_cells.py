"""Cells of 04_finetuning_strategies.ipynb: every fine-tuning strategy on aspirin, accuracy against forgetting.

Built and executed by make_notebooks.py. The notebook runs a smaller study itself (with
JAXTL_FAST=1 tiny settings, the test suite); opened in a clone of the repository without
JAXTL_FAST it shows the saved full study instead (benchmarks/results/strategies/, made by
`python benchmarks/strategies_aspirin.py`).
"""

INTRO = """\
# Fine-tuning strategies side by side: SPICE MACE -> rMD17 aspirin

A foundation model fine-tuned on a few hundred structures of one molecule gets better on that
molecule; the question is what it costs elsewhere. jaxtl expresses every strategy in one mechanism
(`jaxtl.finetune.strategies`): a reparametrisation of chosen weights plus labels that tell the
optimiser what trains.

| strategy | what trains |
|---|---|
| naive | every weight (mace `--freeze 0`) |
| freeze5 / freeze6 | mace-torch's `--freeze 5` / `--freeze 6`: only the last blocks |
| lora | `W = W0 + A B` (rank 4) on every 2-D weight; each `W0` frozen; `B = 0` at the start |
| magnitude | one scale per irrep channel of each interaction/product `linear` block (MMEA-style, arXiv 2511.06696) |
| replay | naive, plus structures labelled by the frozen foundation in the loss (weight 0.5) |
| replay+lora | both |

arXiv 2606.12704 compares such strategies for foundation MLIPs and reports that the E0 initialisation
and the hyperparameters matter more than the choice of strategy, and that only replay keeps the
foundation's accuracy outside the new data. This study asks the same on a small scale: every strategy
gets the same optimisation-step budget, learning rate, schedule and refitted E0s ("average") at 50 and
500 aspirin training structures, and is measured on

* **aspirin** (held-out rMD17 test structures, PBE): energy and force RMSE;
* **forgetting on 3BPA** (a different molecule with nitrogen, which aspirin lacks; wB97X labels while
  SPICE is wB97M, so the foundation's own error against them is the baseline): the change from the
  foundation's predictions and the error against DFT;
* **short-range repulsion**: C-C, C-H and O-H pairs at 0.5-1.0 A, the change of the interaction energy
  curve from the foundation's;
* **cost**: trained parameters, optimiser-state bytes, wall time.

The replay set is 100 rattled copies of the training structures plus the 81 H/C/N/O molecules of ASE's
G2 collection (rattled), all labelled by the frozen foundation; no 3BPA structure is in it."""

RUN_MD = """\
## Run it

Opened in a clone of the repository without `JAXTL_FAST`, the notebook shows the saved full study
(`benchmarks/strategies_aspirin.py`: seven strategies at 50 and 500 structures, hours on a CPU). Anywhere
else it runs a smaller one here: naive, freeze6, LoRA and replay at one size, the same step budget each,
scored on aspirin and by the change of the 3BPA forces from the foundation's (`JAXTL_FAST=1`: tiny settings,
meaningless numbers). Data and model come from `jaxtl.datasets` (`JAXTL_DATA` names a mirror)."""

RUN = """\
import json, math, os, shutil, time
from pathlib import Path

import numpy as np
import ase.io
import jax

import jaxtl
import jaxtl.datasets

print('JAX devices:', jax.devices())
FAST = bool(os.environ.get('JAXTL_FAST'))
OUT = Path(os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')) / 'strategies'
SAVED = next((d for d in (Path.cwd() / 'benchmarks/results/strategies', Path.cwd().parent / 'benchmarks/results/strategies')
              if (d / 'results.json').exists()), None)
LIVE = FAST or SAVED is None
if FAST:
    S = dict(n_train=10, steps=2, n_test=6, n_3bpa=4, replay_size=4)
else:  # minutes on a GPU
    S = dict(n_train=100, steps=300, n_test=100, n_3bpa=50, replay_size=100)
print('running the study here' if LIVE else f'showing the saved full study in {os.path.relpath(SAVED)}')
STRATEGY = {'naive': dict(name='naive'), 'freeze6': dict(name='freeze', freeze=6),
            'lora': dict(name='lora', lora_rank=4),
            'replay': dict(name='replay', replay_size=S['replay_size'], replay_weight=0.5)}


def subset(src, dst, n, seed=0):
    \"\"\"A fixed random subset of `n` frames of `src`, written to `dst`.\"\"\"
    frames = ase.io.read(src, ':')
    keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(dst, [frames[i] for i in keep], format='extxyz')
    return dst


def forces_of(model, frames, variables=None):
    \"\"\"Forces on `frames` of a loaded model (or of other `variables` in its architecture),
    [n_atoms_total, 3] in eV/A.\"\"\"
    from jaxtl.graph import batch_atoms

    graph = batch_atoms(frames, model.config.r_max, np.float32).graph
    forces = model.predict(graph, compute_stress=False, variables=variables)['forces']
    return np.asarray(forces)[np.asarray(graph.node_mask)]


def run_study():
    from jaxtl.convert.convert import convert_file
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
    from jaxtl.train.data import DataConfig
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    shutil.rmtree(OUT, ignore_errors=True)  # a fresh run: the training loop refuses folders holding checkpoints
    OUT.mkdir(parents=True)
    foundation = OUT / 'foundation'
    convert_file(jaxtl.datasets.path('spice-mace'), foundation, dtype='float32', log=lambda *_: None)
    train = subset(jaxtl.datasets.path('rmd17-aspirin-train'), OUT / 'train.xyz', math.ceil(S['n_train'] / 0.9))
    test = subset(jaxtl.datasets.path('rmd17-aspirin-test'), OUT / 'test.xyz', S['n_test'])
    bpa = ase.io.read(subset(jaxtl.datasets.path('3bpa-300K'), OUT / '3bpa.xyz', S['n_3bpa']), ':')
    base = jaxtl.load_model(foundation)
    bpa_foundation = forces_of(base, bpa)
    rows = []
    for name, options in STRATEGY.items():
        n_replay = S['replay_size'] if name == 'replay' else 0
        epochs = max(1, math.ceil(S['steps'] / math.ceil((S['n_train'] + n_replay) / 10)))
        config = TrainConfig(max_num_epochs=epochs, seed=0, progress_bar=False, plot=False, ema=True, ema_decay=0.99,
                             optimizer=OptimizerConfig(lr=0.005, scheduler='cosine', decay_epochs=epochs,
                                                       min_lr_factor=0.05))
        t0 = time.perf_counter()
        data = DataConfig(train_file=str(train), test_file=str(test), batch_size=10)
        ft = finetune(FinetuneConfig(FoundationConfig(str(foundation)), data, StrategyConfig(**options), config,
                                     e0s='average'), OUT / name, log=lambda *_: None)
        m = ft.train.metrics['test']['all']
        tuned = jaxtl.load_model(ft.model_dir)
        # the foundation's compiled predict serves every tuned model of its architecture (only weights differ)
        bpa_tuned = forces_of(base, bpa, tuned.variables) if tuned.config == base.config else forces_of(tuned, bpa)
        d3bpa = 1e3 * np.sqrt(np.mean((bpa_tuned - bpa_foundation) ** 2))
        rows.append({'n_train': S['n_train'], 'strategy': name, 'energy_rmse': m['energy_rmse'],
                     'forces_rmse': m['forces_rmse'], '3bpa_vs_foundation': {'forces_rmse': float(d3bpa)},
                     'n_trainable': ft.report.n_trainable, 'optimiser_state_bytes': ft.report.state_bytes,
                     'n_replay': ft.n_replay, 'wall_s': time.perf_counter() - t0})
    lines = ['| n_train | strategy | trained params | optimiser state (kB) | aspirin E (meV/atom) | aspirin F (meV/A) '
             '| 3BPA dF vs foundation (meV/A) | wall (s) |', '|---|---|---|---|---|---|---|---|']
    lines += [f"| {r['n_train']} | {r['strategy']} | {r['n_trainable']} | {r['optimiser_state_bytes'] / 1e3:.0f} | "
              f"{r['energy_rmse']:.2f} | {r['forces_rmse']:.1f} | {r['3bpa_vs_foundation']['forces_rmse']:.1f} | "
              f"{r['wall_s']:.0f} |" for r in rows]
    (OUT / 'results.json').write_text(json.dumps({'settings': S, 'runs': rows}, indent=2))
    (OUT / 'results.md').write_text('\\n'.join(lines) + '\\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.scatter(r['forces_rmse'], r['3bpa_vs_foundation']['forces_rmse'], s=50, label=r['strategy'])
    ax.set(xlabel='aspirin force RMSE (meV/A)', ylabel='3BPA force change from the foundation (meV/A)',
           title=f"{S['n_train']} aspirin structures, {S['steps']} steps")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / 'strategies.png', dpi=110)
    plt.close(fig)
    return OUT


study = run_study() if LIVE else SAVED
results = json.loads((study / 'results.json').read_text())
print((study / 'results.md').read_text())"""

PLOT = """\
from IPython.display import Image
Image(filename=str(study / 'strategies.png'))"""

SUMMARY_MD = """\
## Per size: the best strategy on aspirin, and what each costs elsewhere

Relative to naive fine-tuning at the same size: aspirin force RMSE, the 3BPA force change from the
foundation, and the trained parameters."""

SUMMARY = """\
runs = results['runs']
for n in sorted({r['n_train'] for r in runs}):
    at = {r['strategy']: r for r in runs if r['n_train'] == n}
    base = at['naive']
    print(f'{n} aspirin structures (naive: aspirin F {base["forces_rmse"]:.1f} meV/A, '
          f'3BPA dF {base["3bpa_vs_foundation"]["forces_rmse"]:.1f} meV/A)')
    for name, r in at.items():
        print(f'  {name:12s} aspirin F x{r["forces_rmse"] / base["forces_rmse"]:5.2f}   '
              f'3BPA dF x{r["3bpa_vs_foundation"]["forces_rmse"] / base["3bpa_vs_foundation"]["forces_rmse"]:5.2f}   '
              f'params x{r["n_trainable"] / base["n_trainable"]:.4f}')"""

READING = """\
The reading of the full study (which strategy wins where, and how it compares with arXiv 2606.12704)
is in `benchmarks/results/strategies/README.md`."""

CELLS = [
    ("md", INTRO),
    ("md", RUN_MD),
    ("code", RUN),
    ("code", PLOT),
    ("md", SUMMARY_MD),
    ("code", SUMMARY),
    ("md", READING),
]
