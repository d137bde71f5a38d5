"""What every student kind shares: its folder record and its errors through a calculator.

A student folder holds `student.json` ({"kind": "mace" | "ace", ...}) beside the
model: a jaxtl model folder `model/` for MACE, ace-jax's `model.npz` for ACE.
`jaxtl.load_calculator` reads it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import ase
import numpy as np
from ase.calculators.calculator import Calculator

from jaxtl.calculator import MACECalculator

STUDENT_FILE = "student.json"


def write_mace_record(folder, model_subdir: str = "model", **extra) -> None:
    """student.json of a MACE student whose jaxtl model folder is `folder/model_subdir`."""
    record = {"kind": "mace", "model_dir": model_subdir, **extra}
    (Path(folder) / STUDENT_FILE).write_text(json.dumps(record, indent=2, default=str))


def calculator_errors(
    calc, frames: Sequence[ase.Atoms], energy_key: str = "REF_energy", forces_key: str = "REF_forces"
) -> dict:
    """Errors of an ASE calculator against labels: {"n_graphs", "energy_mae", "energy_rmse"
    (meV/atom), "forces_mae", "forces_rmse" (meV/A, per component)}: the fields of
    `jaxtl.evaluate.evaluate_configs`, so MACE and ACE students report alike."""
    de, df = [], []
    for a in frames:
        b = ase.Atoms(numbers=a.numbers, positions=a.positions, cell=a.cell, pbc=a.pbc)
        b.calc = calc
        if energy_key in a.info:
            de.append((b.get_potential_energy() - float(a.info[energy_key])) / len(a))
        if forces_key in a.arrays:
            df.append((b.get_forces() - np.asarray(a.arrays[forces_key])).reshape(-1))
    out: dict = {"n_graphs": len(frames)}
    if de:
        de = np.asarray(de)
        out.update(energy_mae=1e3 * float(np.mean(np.abs(de))), energy_rmse=1e3 * float(np.sqrt(np.mean(de**2))))
    if df:
        df = np.concatenate(df)
        out.update(forces_mae=1e3 * float(np.mean(np.abs(df))), forces_rmse=1e3 * float(np.sqrt(np.mean(df**2))))
    return out


def load_calculator(path, **kwargs) -> Calculator:
    """An ASE calculator for any student folder, MACE or ACE, or a jaxtl model folder.

    Reads `path/student.json` (written by `jaxtl distill`): kind "mace" gives a
    MACECalculator of its model folder, kind "ace" a compiled ACE calculator of its
    model.npz (`jaxtl.distill.ace.ace_calculator`; needs the `ace` extra). Without student.json, a jaxtl model folder
    (config.json + variables/), or a folder holding one as `model/`, gives a MACECalculator. Keyword arguments go
    to the calculator. Raises FileNotFoundError / ValueError saying what was expected.
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such student folder")
    record_file = folder / STUDENT_FILE
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        kind = record.get("kind")
        if kind == "mace":
            return MACECalculator(folder / record.get("model_dir", "model"), **kwargs)
        if kind == "ace":
            from jaxtl.distill.ace import ace_calculator  # ace-jax, an optional extra

            return ace_calculator(folder, **kwargs)
        raise ValueError(f"{record_file}: unknown student kind {kind!r} (expected 'mace' or 'ace')")
    for candidate in (folder, folder / "model"):  # a model folder, or a student folder written before student.json
        if (candidate / "config.json").is_file() and (candidate / "variables").exists():
            return MACECalculator(candidate, **kwargs)
    raise ValueError(
        f"{folder} is not a student folder: expected student.json (a `jaxtl distill` student, "
        "MACE or ACE) or a jaxtl model folder (config.json + variables/)"
    )
