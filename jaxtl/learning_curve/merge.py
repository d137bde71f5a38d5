"""Cells finished elsewhere, taken into this grid from that grid's results.json.

A grid completed over several machines that share no folder (or a run folder that was
lost after its report was saved) keeps its finished cells in the results.json each report
writes: every record, with the commit, device and date it was trained with. Importing
that file into a run folder writes each record as the cell's cell.json, so the grid skips
it and reports it like a cell trained here:

    import_cells(config, "runs/lc", "elsewhere/results.json")   # -> names of the cells taken

Only records of the same grid are taken: the file's settings must be this config's (the
grid's axes and a larger epoch cap here excepted), and each record must stand under this
config (`cell.done`). A cell finished here is never replaced; a cell another live process
is training is left to it. Each imported cell.json says where it came from
(`imported_from`: the file and the commit of the report that held it).
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxtl.config_io import write_text_atomic
from jaxtl.learning_curve.cell import CELL_FILE, Cell, done, finished, grid_cells
from jaxtl.learning_curve.claims import holder
from jaxtl.learning_curve.config import LearningCurveConfig, difference_message

# what the grid and its report read of a record
IMPORT_KEYS = (
    "fraction",
    "strategy",
    "seed",
    "n_train",
    "n_test",
    "device",
    "forces_rmse",
    "energy_rmse",
    "epochs_run",
    "hit_max_epochs",
)


def import_cells(config: LearningCurveConfig, out_dir: str | Path, results_file: str | Path) -> list[str]:
    """Write the finished cells of `results_file` (another run's results.json) that this
    grid lacks into `out_dir`; return their names.

    Raises:
        ValueError: the file is not a learning-curve report, holds a grid with other
            settings (names the first differing key), or a record lacks a key.
    """
    path = Path(results_file)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read a learning-curve results.json ({err})") from err
    if not isinstance(report, dict) or "config" not in report or "cells" not in report:
        raise ValueError(f"{path}: not a learning-curve results.json (no 'config' and 'cells')")
    differ = difference_message(LearningCurveConfig.from_dict(report["config"]), config)
    if differ:
        raise ValueError(f"{path} holds a grid with other settings: {differ}")
    here = set(grid_cells(config))
    commit = report.get("provenance", {}).get("jaxtl_commit")
    taken = []
    for i, record in enumerate(report["cells"]):
        missing = [k for k in IMPORT_KEYS if k not in record]
        if missing:
            raise ValueError(f"{path}: cells[{i}] has no {missing[0]!r}")
        cell = Cell(float(record["fraction"]), record["strategy"], int(record["seed"]))
        cell_dir = Path(out_dir) / "cells" / cell.name
        if cell not in here or not done(record, config) or done(finished(cell_dir), config) or holder(cell_dir):
            continue
        cell_dir.mkdir(parents=True, exist_ok=True)
        imported = {**record, "imported_from": {"file": str(path), "report_commit": commit}}
        write_text_atomic(cell_dir / CELL_FILE, json.dumps(imported, indent=1))
        taken.append(cell.name)
    return taken
