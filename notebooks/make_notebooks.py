"""Write the notebooks from their cell sources, then execute them with outputs kept.

    python notebooks/make_notebooks.py            # full settings (minutes)
    JAXTL_FAST=1 python notebooks/make_notebooks.py --check   # fast settings, in a temp dir (tests)
    python notebooks/make_notebooks.py 03_distill_and_md.ipynb  # only the notebooks named
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

CONVERT = [
    ("md", "# Convert a mace-torch model and check it\n\nThe real H2/Cu MACE of the frozen-transfer-learning "
           "paper's reactive system (`../shared/models/h2cu_mace.model`, mace 0.2.0) is converted into a jaxtl "
           "model folder; the converter compares jaxtl with mace-torch on structures of the model's own elements "
           "and refuses to write a model that disagrees."),
    ("code", "import os, numpy as np, jax\njax.config.update('jax_enable_x64', True)\nimport jaxtl\n"
             "from jaxtl.convert.convert import convert_file\n"
             "SHARED = os.path.abspath('../shared') if os.path.isdir('../shared') else os.path.abspath('../../shared')\n"
             "OUT = os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')\n"
             "config, _ = convert_file(f'{SHARED}/models/h2cu_mace.model', f'{OUT}/h2cu', dtype='float64')\nconfig"),
    ("md", "## As an ASE calculator"),
    ("code", "from ase.build import fcc111\nfrom ase import Atoms\n"
             "slab = fcc111('Cu', size=(2, 2, 3), vacuum=6.0)\ntop = slab.positions[:, 2].max()\n"
             "slab += Atoms('H2', positions=[[1.0, 1.0, top + 1.6], [1.0, 1.74, top + 1.6]])\n"
             "slab.calc = jaxtl.MACECalculator(f'{OUT}/h2cu')\n"
             "print('E =', slab.get_potential_energy(), 'eV')\nprint('max |F| =', np.abs(slab.get_forces()).max(), 'eV/A')"),
    ("md", "## Inside JAX: a jitted energy and its gradient with respect to the parameters"),
    ("code", "from jaxtl.graph import batch_atoms\nmodel = jaxtl.load_model(f'{OUT}/h2cu')\n"
             "graph = batch_atoms([slab], model.config.r_max).graph\nenergy = jax.jit(model.energy_fn())\n"
             "g = jax.grad(lambda p: energy(p, graph).sum())(model.params)\n"
             "print(energy(model.params, graph)[0], 'eV;', sum(x.size for x in jax.tree_util.tree_leaves(g)), "
             "'parameter gradients')"),
    ("md", "## Parity against mace-torch, as recorded by the converter"),
    ("code", "import json\njson.load(open(f'{OUT}/h2cu/metadata.json'))['parity']"),
]

FINETUNE = [
    ("md", "# Frozen transfer learning: SPICE MACE -> rMD17 aspirin\n\n`benchmarks/finetune_aspirin.py` "
           "fine-tunes the SPICE foundation model with mace-torch's `--freeze 0/5/6` and a finer choice, against "
           "the same architecture from scratch, on growing fractions of the aspirin pool. With `JAXTL_FAST=1` "
           "the notebook runs the script's tiny settings (the test suite does this); otherwise it shows the "
           "study's saved results."),
    ("code", "import json, os, subprocess, sys\nfrom pathlib import Path\n"
             "OUT = os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')\n"
             "ROOT = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()\n"
             "if os.environ.get('JAXTL_FAST'):\n"
             "    study = Path(OUT) / 'aspirin_fast'\n"
             "    subprocess.run([sys.executable, str(ROOT / 'benchmarks/finetune_aspirin.py'), '--fast', '--out', str(study)], check=True)\n"
             "else:\n    study = ROOT / 'benchmarks/results/aspirin'\n"
             "rows = json.loads((study / 'results.json').read_text())\nprint((study / 'results.md').read_text())"),
    ("code", "from IPython.display import Image\nImage(filename=str(study / 'learning_curves.png'))"),
    ("md", "The paper's claim, checked on these numbers: does fine-tuning on 10-20 % of the pool match the same "
           "architecture trained from scratch on all of it? The reference is the best scratch run on 100 % "
           "(at the study's step budget, and with a longer budget where the study has one)."),
    ("code", "scratch_all = [r for r in rows if r['strategy'].startswith('scratch') and r['fraction'] == 1.0]\n"
             "if scratch_all:\n"
             "    ref = min(scratch_all, key=lambda r: r['forces_rmse'])\n"
             "    print(f\"scratch on 100 % ({ref['strategy']}, {ref['n_train']} structures): \"\n"
             "          f\"E {ref['energy_rmse']:.2f} meV/atom, F {ref['forces_rmse']:.1f} meV/A\")\n"
             "    for r in rows:\n"
             "        if r['fraction'] in (0.1, 0.2) and not r['strategy'].startswith('scratch'):\n"
             "            e_ok, f_ok = r['energy_rmse'] <= ref['energy_rmse'], r['forces_rmse'] <= ref['forces_rmse']\n"
             "            verdict = 'matches (E and F)' if e_ok and f_ok else 'E only' if e_ok else 'F only' if f_ok else 'does not match'\n"
             "            print(f\"{r['strategy']:6s} on {r['fraction']:.0%} ({r['n_train']:4d}): E {r['energy_rmse']:6.2f}  \"\n"
             "                  f\"F {r['forces_rmse']:6.1f}  -> {verdict}\")"),
]

from distill_and_md_cells import CELLS as DISTILL_AND_MD  # noqa: E402  (a long notebook: its own file)
from strategies_cells import CELLS as STRATEGIES  # noqa: E402

NOTEBOOKS = {"01_convert_and_check.ipynb": CONVERT, "02_frozen_finetuning_aspirin.ipynb": FINETUNE,
             "03_distill_and_md.ipynb": DISTILL_AND_MD, "04_finetuning_strategies.ipynb": STRATEGIES}


def build(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if k == "md" else nbformat.v4.new_code_cell(s) for k, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, cwd, timeout=900):
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    root = HERE.parent
    chosen = [a for a in argv if a.endswith(".ipynb")] or list(NOTEBOOKS)  # e.g. only 03_distill_and_md.ipynb
    unknown = sorted(set(chosen) - set(NOTEBOOKS))
    if unknown:
        sys.exit(f"unknown notebooks {unknown}; choose from {list(NOTEBOOKS)}")
    for name in chosen:
        nb = execute(build(NOTEBOOKS[name]), root)
        if not check:
            nbformat.write(nb, HERE / name)
            print("wrote", HERE / name)
        else:
            print("executed", name)


if __name__ == "__main__":
    main()
