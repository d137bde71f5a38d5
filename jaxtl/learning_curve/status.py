"""Where a grid stands, read from its run folder alone: which cells are finished, which are
training (and where), which were interrupted, which have not started.

    for row in grid_status("runs/lc"):
        print(row["cell"], row["state"], row["epochs"])

`jaxtl learning-curve --status --out OUT` prints the same as a table. Nothing is trained or
written; a grid whose processes run on several machines sharing the folder may be watched
from any of them. A multi-process job (`--distributed`) trains each cell with all its
processes and claims nothing, so its cell in progress shows as interrupted. The epochs of a
cell in progress are those logged; its checkpoint may be up to `checkpoint_interval_s` behind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from jaxtl.learning_curve.cell import done, finished, grid_cells
from jaxtl.learning_curve.claims import holder
from jaxtl.learning_curve.config import LearningCurveConfig

STATES = ("finished", "training", "interrupted", "pending")


def _epochs(log_path: Path) -> list[dict]:
    """The epoch records of a metrics.jsonl being written (a torn last line is skipped)."""
    try:
        lines = log_path.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "valid_loss" in record:
            records.append(record)
    return records


def grid_status(out_dir: str | Path) -> list[dict]:
    """One row per cell of the grid saved in `out_dir` (grid_config.json), in the grid's order.

    Each row: cell (name), state (one of `STATES`: finished, training: claimed by a live
    process, interrupted: begun with no live claim, pending), epochs (run so far, or in the
    record), best_valid_loss, valid_forces_rmse (meV/A, the last epoch's), forces_rmse and
    energy_rmse (test, finished cells), host and pid (training cells).

    Raises:
        FileNotFoundError: `out_dir` holds no grid.
    """
    from jaxtl.learning_curve.grid import CONFIG_FILE

    out = Path(out_dir)
    if not (out / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{out}: no learning-curve grid here ({CONFIG_FILE} missing)")
    config = LearningCurveConfig.load(out / CONFIG_FILE)
    rows = []
    for cell in grid_cells(config):
        cell_dir = out / "cells" / cell.name
        record = finished(cell_dir)
        epochs = _epochs(cell_dir / "run" / "metrics.jsonl")
        owner = holder(cell_dir)
        row = {"cell": cell.name, "host": None, "pid": None, "forces_rmse": None, "energy_rmse": None}
        if done(record, config):
            row.update(state="finished", epochs=record["epochs_run"], best_valid_loss=record.get("best_valid_loss"))
            row.update(forces_rmse=record["forces_rmse"], energy_rmse=record["energy_rmse"])
        else:
            state = "training" if owner else ("interrupted" if epochs else "pending")
            losses = [r["valid_loss"] for r in epochs if math.isfinite(r["valid_loss"])]
            row.update(state=state, epochs=len(epochs), best_valid_loss=min(losses) if losses else None)
            if owner:
                row.update(host=owner.get("host"), pid=owner.get("pid"))
        last = epochs[-1].get("valid", {}).get("all", {}) if epochs else {}
        row["valid_forces_rmse"] = last.get("forces_rmse")
        rows.append(row)
    return rows


def status_table(rows: list[dict], max_epochs: int | None = None) -> str:
    """`grid_status` rows as a text table, with a count of each state."""
    counts = {s: sum(r["state"] == s for r in rows) for s in STATES}
    lines = [", ".join(f"{n} {s}" for s, n in counts.items()) + f" (of {len(rows)} cells)"]
    lines.append(f"{'cell':<18} {'state':<12} {'epochs':>9} {'valid F':>8} {'test F':>8} {'test E':>8}  where")
    for r in rows:
        cap = f"/{max_epochs}" if max_epochs and r["state"] != "finished" and r["epochs"] else ""

        def num(x, digits):
            return "-" if x is None else f"{x:.{digits}f}"

        where = f"{r['host']} pid {r['pid']}" if r["state"] == "training" else ""
        lines.append(
            f"{r['cell']:<18} {r['state']:<12} {str(r['epochs']) + cap:>9} {num(r['valid_forces_rmse'], 1):>8} "
            f"{num(r['forces_rmse'], 1):>8} {num(r['energy_rmse'], 2):>8}  {where}".rstrip()
        )
    lines.append("F: force RMSE (meV/A; valid: the last epoch's), E: energy RMSE (meV/atom)")
    return "\n".join(lines)
