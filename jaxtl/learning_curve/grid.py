"""`learning_curve`: the whole grid, cell by cell, resumable; the report after every cell.

    from jaxtl.learning_curve import DataSettings, GridSettings, LearningCurveConfig, learning_curve
    config = LearningCurveConfig(DataSettings("spice_mace.model", "pool.xyz", "test.xyz"),
                                 GridSettings(fractions=(0.1, 1.0), strategies=("scratch", "f5"), seeds=3))
    learning_curve(config, "runs/lc")          # run again: finished cells are skipped

Everything that can be wrong with the input is checked before the first cell trains:
strategy names, subsets smaller than a batch, elements the foundation lacks, a run folder
holding another grid.

Several processes may run the same grid at once (the same command, on one machine or on
machines sharing the run folder): each trains the cells no other live process has claimed
(`jaxtl.learning_curve.claims`), so the cells split between them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from jaxtl.learning_curve.cell import Cell, done, finished, grid_cells, run_cell
from jaxtl.learning_curve.claims import Claim, holder
from jaxtl.learning_curve.config import LearningCurveConfig, check_strategy, difference_message
from jaxtl.learning_curve.merge import import_cells
from jaxtl.learning_curve.report import write_report
from jaxtl.learning_curve.subsets import Split, split_pool
from jaxtl.provenance import jaxtl_commit
from jaxtl.train.distributed import barrier, is_primary, per_device_batch_size

log = logging.getLogger("jaxtl.learning_curve")
CONFIG_FILE = "grid_config.json"


@dataclasses.dataclass
class GridResult:
    """records: every finished cell of the grid (cell.json contents); computed: the cells
    this call trained; summary: the results.json contents; held_elsewhere: unfinished
    cells this call left to the other processes training them."""

    records: list[dict]
    computed: list[str]
    summary: dict
    out_dir: Path
    held_elsewhere: list[str] = dataclasses.field(default_factory=list)


def cells_of(config: LearningCurveConfig, first: Sequence[tuple] = ()) -> list[Cell]:
    """The grid's cells: those of `first` in its order, then the rest by fraction, strategy
    and seed. An entry of `first` is (fraction, strategy), every seed, or (fraction,
    strategy, seed), that one cell."""
    g = config.grid
    every = grid_cells(config)
    ahead = []
    for entry in first:
        fraction, strategy, *seed = entry
        seeds = seed if seed else range(g.seeds)
        ahead += [Cell(float(fraction), strategy, int(s)) for s in seeds]
    unknown = [c for c in ahead if c not in every]
    if unknown:
        c = unknown[0]
        raise ValueError(f"first: {c.fraction:g} {c.strategy} seed {c.seed} is not a cell of the grid")
    return list(dict.fromkeys(ahead + every))


def prepare_foundation(foundation: str, out: Path, dtype: str, head: str | None) -> Path:
    """A jaxtl model folder of the foundation: the folder itself, or a mace-torch file or a
    released name converted once into OUT/foundation (reused by every cell and rerun)."""
    path = Path(foundation)
    if path.is_dir():
        return path
    folder = out / "foundation"
    if not (folder / "config.json").exists():
        if not path.exists():
            from jaxtl.foundations import resolve

            path = resolve(foundation, log=log.info)
            if path.is_dir():
                return path
        from jaxtl.convert.convert import convert_file  # the only door to torch

        log.info("converting %s into %s", path, folder)
        # into a folder of this process's own, then renamed: another process of the same
        # grid converting at the same time never sees a half-written foundation
        partial = out / f"foundation.partial-{os.getpid()}"
        convert_file(path, partial, dtype=dtype, head=head, log=log.info)
        try:
            os.rename(partial, folder)
        except OSError:  # another process got there first
            if not (folder / "config.json").exists():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def _check_saved_config(out: Path, config: LearningCurveConfig) -> None:
    """Refuse a run folder holding a grid with other settings (the axes may differ)."""
    path = out / CONFIG_FILE
    if not path.exists():
        return
    differ = difference_message(LearningCurveConfig.load(path), config)
    if differ:
        raise ValueError(f"{out} holds a grid with other settings: {differ}; use another --out")


def check_inputs(
    config: LearningCurveConfig, pool: list, test: list, atomic_numbers: Sequence[int], splits: dict[int, Split]
) -> None:
    """Every input error the grid can meet, before any training.

    pool, test: `Configuration`s of the pool and test files; atomic_numbers: the foundation's.
    """
    from jaxtl.graph.io import check_elements

    for name in config.grid.strategies:
        check_strategy(name)
    batch = config.data.batch_size
    for fraction in config.grid.fractions:
        n = min(split.subset_size(fraction) for split in splits.values())
        if n < batch:
            raise ValueError(
                f"fraction {fraction:g} leaves {n} training structures of the pool's "
                f"{len(splits[0].order)}, fewer than the batch size {batch}"
            )
    check_elements(pool, atomic_numbers)
    check_elements(test, atomic_numbers)


def learning_curve(
    config: LearningCurveConfig,
    out_dir: str | Path,
    *,
    command: str | None = None,
    first: Sequence[tuple] = (),
    max_cells: int | None = None,
    n_devices: int = 1,
    import_from: Sequence[str | Path] = (),
) -> GridResult:
    """Run (or complete) the grid of `config` in `out_dir` and write its report.

    Finished cells are skipped; an interrupted cell resumes from its checkpoint; with a
    larger `max_epochs` than before, the cells that stopped at the old cap continue.

    Args:
        config: data, grid, convergence and training settings (saved as OUT/grid_config.json).
        out_dir: the run folder; cells in OUT/cells/<fraction>_<strategy>_s<seed>/.
        command: the command line recorded in the report (default: the Python call).
        first: cells to run before the others: (fraction, strategy) for every seed, or
            (fraction, strategy, seed) for one.
        max_cells: train at most this many cells in this call, then report and return.
        n_devices: devices of each cell's data mesh (`TrainConfig.n_devices`): this process's
            first n_devices, or in a multi-process job (`jaxtl.train.distributed`, every
            process making this call) all devices of all processes. The grid's batch size is
            the global batch, a multiple of n_devices. Not a setting of the grid: a rerun may
            use other devices (each cell records its own).
        import_from: results.json files of runs of this grid elsewhere: their finished cells
            are taken into `out_dir` before training (`jaxtl.learning_curve.merge`).

    Raises:
        ValueError: an unknown strategy, a fraction smaller than a batch, a folder holding a
            grid with other settings, an `import_from` file of another grid.
        DataError: an element the foundation lacks (names element, file and frame).
    """
    import ase.io

    from jaxtl.graph.io import DataKeys, read_configurations
    from jaxtl.model_io import load_model_files

    out = Path(out_dir)
    per_device_batch_size(config.data.batch_size, n_devices)  # the global batch splits evenly
    _check_saved_config(out, config)
    for name in config.grid.strategies:
        check_strategy(name)
    d = config.data
    keys = DataKeys(energy=d.energy_key, forces=d.forces_key, stress=d.stress_key)
    pool = read_configurations(d.train_file, keys, require=("energy", "forces"))
    test = read_configurations(d.test_file, keys, require=("energy", "forces"))
    splits = {seed: split_pool(len(pool), d.valid_fraction, seed) for seed in range(config.grid.seeds)}
    if is_primary():  # in a multi-process job process 0 writes, the others wait and read
        out.mkdir(parents=True, exist_ok=True)
        prepare_foundation(d.foundation, out, config.train.dtype, d.head)
    barrier("learning curve: foundation ready")
    foundation_dir = prepare_foundation(d.foundation, out, config.train.dtype, d.head)
    f_config, _, _ = load_model_files(foundation_dir)
    check_inputs(config, pool, test, f_config.atomic_numbers, splits)
    if is_primary():
        config.save(out / CONFIG_FILE)
        for path in import_from:
            taken = import_cells(config, out, path)
            log.info("%s: %d finished cells imported%s", path, len(taken), f" ({', '.join(taken)})" if taken else "")
    barrier("learning curve: cells imported")

    scratch_model = {
        k: v for k, v in f_config.to_dict().items() if k not in ("atomic_numbers", "avg_num_neighbors", "dtype")
    }
    commit = jaxtl_commit()
    command = command or f"jaxtl.learning_curve.learning_curve({config!r}, {str(out)!r})"
    cells = cells_of(config, first)
    todo = [c for c in cells if not done(finished(out / "cells" / c.name), config)]
    log.info("%d of %d cells finished; %d to run", len(cells) - len(todo), len(cells), len(todo))
    frames = ase.io.read(d.train_file, ":") if todo else []
    if todo and len(frames) != len(pool):
        raise ValueError(f"{d.train_file}: ASE reads {len(frames)} frames, jaxtl {len(pool)}")
    computed, held = [], []
    for cell in todo:
        if max_cells is not None and len(computed) >= max_cells:
            break
        status, record = _claim_and_run(
            cell, out, config, frames, splits, foundation_dir, scratch_model, len(test), commit, n_devices
        )
        if status != "trained":
            held += [cell.name] if status == "held" else []
            continue
        computed.append(cell.name)
        if is_primary():  # the plot costs seconds: redrawn between cells only when small beside a cell
            write_report(out, config, _records(out, cells, config), command, commit, with_plot=record["wall_s"] > 60)
    held = [name for name in held if not done(finished(out / "cells" / name), config)]
    if held:
        log.info("%d cells left to the processes training them: %s", len(held), ", ".join(held))
    records = _records(out, cells, config)
    summary = write_report(out, config, records, command, commit) if is_primary() else None
    barrier("learning curve: report written")
    if summary is None:
        summary = json.loads((out / "results.json").read_text())
    return GridResult(records, computed, summary, out, held)


def _claim_and_run(cell, out, config, frames, splits, foundation_dir, scratch_model, n_test, commit, n_devices):
    """("trained", its record) for `cell` trained under this process's claim; ("held",
    None) when another live process holds the cell, ("finished", record) when one finished
    it meanwhile. A multi-process job trains every cell with all its processes together,
    so it claims nothing (one such job per run folder)."""
    import contextlib

    import jax

    cell_dir = out / "cells" / cell.name
    claim = Claim.take(cell_dir) if jax.process_count() == 1 else contextlib.nullcontext()
    if claim is None:
        who = holder(cell_dir) or {}
        log.info("cell %s: being trained by %s (pid %s); skipped", cell.name, who.get("host"), who.get("pid"))
        return "held", None
    with claim:
        previous = finished(cell_dir)
        if done(previous, config):  # by another process, since this one listed the cells
            return "finished", previous
        split = splits[cell.seed]
        log.info("cell %s: %d training structures", cell.name, split.subset_size(cell.fraction))
        record = run_cell(
            cell,
            cell_dir,
            config,
            frames,
            split.subset(cell.fraction),
            split.valid,
            foundation_dir,
            scratch_model,
            n_test,
            commit,
            n_devices,
        )
    log.info(
        "cell %s: force RMSE %.2f meV/A, energy RMSE %.3f meV/atom, %d epochs (%.0f s)",
        cell.name,
        record["forces_rmse"],
        record["energy_rmse"],
        record["epochs_run"],
        record["wall_s"],
    )
    return "trained", record


def _records(out: Path, cells: Sequence[Cell], config: LearningCurveConfig) -> list[dict]:
    """The records that stand under `config` (a cell capped by a smaller `max_epochs` is
    still training: its old record is left out of the report)."""
    return [r for r in (finished(out / "cells" / c.name) for c in cells) if done(r, config)]
