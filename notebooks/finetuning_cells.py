"""Cells of 02_frozen_finetuning_aspirin.ipynb: the learning curve of frozen fine-tuning against scratch.

Built and executed by make_notebooks.py. With JAXTL_FAST=1 (the test suite) the notebook runs a tiny
grid itself; opened in a clone of the repository without JAXTL_FAST it shows the saved study
(benchmarks/results/learning_curve_aspirin, made by `benchmarks/learning_curve_aspirin.sh`); anywhere
else it runs the full grid (hours on a CPU; it resumes where it stopped).
"""

INTRO = """\
# Frozen transfer learning: SPICE MACE -> rMD17 aspirin, at convergence

The claim of arXiv 2502.15582: a foundation model fine-tuned with its lower layers frozen on 10-20 % of
a dataset matches the same architecture trained from scratch on all of it. `jaxtl.learning_curve` tests
it on any data: every cell (fraction of the pool x strategy x seed) trains to convergence (early
stopping on a validation set, the best-validation EMA weights kept, the same rule for scratch), the
subsets are nested and seeded, every cell is tested on the whole test file, and the report gives the
verdict: the smallest fraction at which each strategy is within the seeds' spread of scratch at the
largest fraction. Here: the SPICE foundation (a small MACE trained on SPICE, wB97M) on rMD17 aspirin
(PBE, another level of theory). Data and model come from `jaxtl.datasets` (a mirror named by
`JAXTL_DATA`, or checked downloads).

Opened in a clone of the repository without `JAXTL_FAST`, the notebook shows the saved study;
`JAXTL_FAST=1` runs a tiny grid (the test suite): its numbers are then meaningless."""

SETUP = """\
import json, os
from pathlib import Path

import numpy as np
import ase.io
import jax

import jaxtl
import jaxtl.datasets

print('JAX devices:', jax.devices())
FAST = bool(os.environ.get('JAXTL_FAST'))
OUT = Path(os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')) / 'aspirin_learning_curve'
# the saved study, when the notebook is opened in a clone of the repository
SAVED = next((d for d in (Path.cwd() / 'benchmarks/results/learning_curve_aspirin',
                          Path.cwd().parent / 'benchmarks/results/learning_curve_aspirin')
              if (d / 'results.json').exists()), None)
LIVE = FAST or SAVED is None
print('running the grid here' if LIVE else f'showing the saved study in {os.path.relpath(SAVED)}')"""

STUDY_MD = """\
## The grid

Fine-tuning trains at lr 0.005, scratch at 0.01 (mace-torch's default), batch 10, EMA, E0s refitted to
each cell's training subset; a cell has converged when its validation loss has not fallen by more than
1 % for `patience` epochs. The same settings as `benchmarks/learning_curve_aspirin.sh` (which also runs
f0, f6 and LoRA) and `jaxtl learning-curve` on the command line."""

STUDY = """\
from jaxtl.learning_curve import ConvergenceSettings, DataSettings, GridSettings, LearningCurveConfig, learning_curve


def subset(src, dst, n, seed=0):
    \"\"\"A fixed random subset of `n` frames of `src`, written to `dst`.\"\"\"
    frames = ase.io.read(src, ':')
    keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(dst, [frames[i] for i in keep], format='extxyz')
    return str(dst)


def run_grid():
    pool, test = jaxtl.datasets.path('rmd17-aspirin-train'), jaxtl.datasets.path('rmd17-aspirin-test')
    if FAST:  # 22 pool structures (20 train, 2 validate), 6 test structures, two epochs
        OUT.mkdir(parents=True, exist_ok=True)
        pool, test = subset(pool, OUT / 'pool.xyz', 22), subset(test, OUT / 'test.xyz', 6, seed=1)
        grid = GridSettings(fractions=(1.0,), strategies=('f5', 'scratch'), seeds=1)
        convergence = ConvergenceSettings(patience=2, max_epochs=2)
    else:
        grid = GridSettings(fractions=(0.05, 0.1, 0.2, 0.5, 1.0), strategies=('scratch', 'f5', 'f6'), seeds=3)
        convergence = ConvergenceSettings(patience=30, max_epochs=500, scheduler_patience=10)
    config = LearningCurveConfig(DataSettings(str(jaxtl.datasets.path('spice-mace')), str(pool), str(test)),
                                 grid, convergence)
    learning_curve(config, OUT)  # run again to resume: finished cells are kept
    return OUT


study = run_grid() if LIVE else SAVED
summary = json.loads((study / 'results.json').read_text())
print((study / 'results.md').read_text().split('## Verdict')[0])"""

PLOT = """\
from IPython.display import Image
Image(filename=str(study / 'learning_curve.png'))"""

CLAIM_MD = """\
## The verdict

For each strategy and error: the smallest fraction at which its mean over seeds is within the seeds'
spread of scratch at the largest fraction (mean <= scratch mean + scratch std), or why there is none yet."""

CLAIM = """\
from jaxtl.learning_curve.report import verdict_lines

print('\\n'.join(verdict_lines(summary)))"""

CELLS = [
    ("md", INTRO),
    ("code", SETUP),
    ("md", STUDY_MD),
    ("code", STUDY),
    ("code", PLOT),
    ("md", CLAIM_MD),
    ("code", CLAIM),
]
