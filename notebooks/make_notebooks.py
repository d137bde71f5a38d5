"""Write the notebooks from their cell sources, then execute them with outputs kept.

python notebooks/make_notebooks.py            # full settings (minutes)
JAXTL_FAST=1 python notebooks/make_notebooks.py --check   # fast settings, in a temp dir (tests)
python notebooks/make_notebooks.py 03_distill_and_md.ipynb  # only the notebooks named
"""

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

INSTALL = """\
# Colab or a fresh environment: install jaxtl with the extras these notebooks use, from a clone of the
# repository (or give pip the repository's git URL in place of the path), then restart the kernel:
# %pip install -e '..[convert,plot]'
#
# The data and models come from jaxtl.datasets: a mirror directory named by JAXTL_DATA (offline), else
# checked downloads into ~/.cache/jaxtl/datasets for the files that have a public URL.
# import os; os.environ['JAXTL_DATA'] = '/path/to/mirror'"""

CONVERT = [
    (
        "md",
        "# Convert a mace-torch model and check it\n\nThe real H2/Cu MACE of the frozen-transfer-learning "
        "paper's reactive system (`jaxtl.datasets.path('h2cu-mace')`, mace 0.2.0) is converted into a jaxtl "
        "model folder; the converter compares jaxtl with mace-torch on structures of the model's own elements "
        "(every head of a multi-head model) and refuses to write a model that disagrees.",
    ),
    (
        "code",
        "import os, numpy as np, jax\njax.config.update('jax_enable_x64', True)\nimport jaxtl\n"
        "import jaxtl.datasets\nfrom jaxtl.convert.convert import convert_file\n"
        "print('JAX devices:', jax.devices())\n"
        "OUT = os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')\n"
        "config, _ = convert_file(jaxtl.datasets.path('h2cu-mace'), f'{OUT}/h2cu', dtype='float64')\nconfig",
    ),
    ("md", "## As an ASE calculator"),
    (
        "code",
        "from ase.build import fcc111\nfrom ase import Atoms\n"
        "slab = fcc111('Cu', size=(2, 2, 3), vacuum=6.0)\ntop = slab.positions[:, 2].max()\n"
        "slab += Atoms('H2', positions=[[1.0, 1.0, top + 1.6], [1.0, 1.74, top + 1.6]])\n"
        "slab.calc = jaxtl.MACECalculator(f'{OUT}/h2cu')\n"
        "print('E =', slab.get_potential_energy(), 'eV')\nprint('max |F| =', np.abs(slab.get_forces()).max(), 'eV/A')",
    ),
    ("md", "## Inside JAX: a jitted energy and its gradient with respect to the parameters"),
    (
        "code",
        "from jaxtl.graph import batch_atoms\nmodel = jaxtl.load_model(f'{OUT}/h2cu')\n"
        "graph = batch_atoms([slab], model.config.r_max).graph\nenergy = jax.jit(model.energy_fn())\n"
        "g = jax.grad(lambda p: energy(p, graph).sum())(model.params)\n"
        "print(energy(model.params, graph)[0], 'eV;', sum(x.size for x in jax.tree_util.tree_leaves(g)), "
        "'parameter gradients')",
    ),
    ("md", "## Parity against mace-torch, as recorded by the converter"),
    ("code", "import json\njson.load(open(f'{OUT}/h2cu/metadata.json'))['parity']"),
]

from distill_and_md_cells import CELLS as DISTILL_AND_MD  # noqa: E402  (a long notebook: its own file)
from finetuning_cells import CELLS as FINETUNE  # noqa: E402
from strategies_cells import CELLS as STRATEGIES  # noqa: E402

NOTEBOOKS = {
    "01_convert_and_check.ipynb": CONVERT,
    "02_frozen_finetuning_aspirin.ipynb": FINETUNE,
    "03_distill_and_md.ipynb": DISTILL_AND_MD,
    "04_finetuning_strategies.ipynb": STRATEGIES,
}


def build(cells):
    """A notebook of (kind, source) cells, the install cell after its title."""
    cells = [cells[0], ("code", INSTALL), *cells[1:]]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if k == "md" else nbformat.v4.new_code_cell(s) for k, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, cwd, timeout=900):
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def drop_warnings(nb):
    """Drop the libraries' warnings on stderr from the saved outputs (they carry this machine's paths)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                o
                for o in cell.outputs
                if not (o.output_type == "stream" and o.name == "stderr" and "Warning" in o.text)
            ]
    return nb


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    root = HERE.parent
    chosen = [a for a in argv if a.endswith(".ipynb")] or list(NOTEBOOKS)  # e.g. only 03_distill_and_md.ipynb
    unknown = sorted(set(chosen) - set(NOTEBOOKS))
    if unknown:
        sys.exit(f"unknown notebooks {unknown}; choose from {list(NOTEBOOKS)}")
    if not check:  # the full chain's figures and numbers are kept with the benchmarks' results
        os.environ.setdefault("JAXTL_NB_RESULTS", str(root / "benchmarks" / "results" / "aspirin_distill"))
    for name in chosen:
        nb = execute(build(NOTEBOOKS[name]), root)
        if not check:
            nbformat.write(drop_warnings(nb), HERE / name)
            print("wrote", HERE / name)
        else:
            print("executed", name)


if __name__ == "__main__":
    main()
