"""Cells of 04_finetuning_strategies.ipynb: every fine-tuning strategy on aspirin, accuracy against forgetting.

Built and executed by make_notebooks.py. With JAXTL_FAST=1 the study script runs its tiny
settings (the test suite); otherwise the notebook shows the saved full study
(benchmarks/results/strategies/, made by `python benchmarks/strategies_aspirin.py`).
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

RUN = """\
import json, os, subprocess, sys
from pathlib import Path
OUT = os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')
ROOT = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()
if os.environ.get('JAXTL_FAST'):  # tiny settings: the numbers mean nothing, the code runs
    study = Path(OUT) / 'strategies_fast'
    subprocess.run([sys.executable, str(ROOT / 'benchmarks/strategies_aspirin.py'), '--fast', '--out', str(study)],
                   check=True, capture_output=True)
else:  # the full study, run by `python benchmarks/strategies_aspirin.py --out runs/strategies`
    study = ROOT / 'benchmarks/results/strategies'
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

CELLS = [("md", INTRO), ("code", RUN), ("code", PLOT), ("md", SUMMARY_MD), ("code", SUMMARY), ("md", READING)]
