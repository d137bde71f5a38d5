"""`train_from_prepared`: train a new MACE from a prepared (on-disk) dataset, streaming.

The recipe and data settings of `jaxtl.train.run.train_from_scratch` (IsolatedAtom
frames set apart as E0s, `max_force`, the validation split, `train_fraction`, the
E0s choices, scale and shift from the training labels, avg_num_neighbors from the
neighbour lists), computed from one pass over the structures, one at a time
(`scan_labels`), so that memory grows only by a few numbers per structure: the
least-squares E0s are fitted on the distinct compositions, each weighted by its
multiplicity (`jaxtl.train.e0s.EnergyTable`), the same minimiser as one row per
structure. Single-head sets only.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import numpy as np

from jaxtl.graph.io import ISOLATED_ATOM, DataError
from jaxtl.graph.labels import Batch
from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches
from jaxtl.train.config import TrainConfig
from jaxtl.train.e0s import E0Spec, EnergyTable, resolve_table_e0s
from jaxtl.train.loop import TrainResult, train

log = logging.getLogger("jaxtl.train")


class Subset:
    """Some structures of an `OnDiskDataset` (the dataset interface `streamed_batches` uses)."""

    def __init__(self, dataset: OnDiskDataset, indices: np.ndarray):
        self.dataset, self.indices = dataset, np.asarray(indices, np.int64)
        self.r_max, self.heads = dataset.r_max, dataset.heads
        self.n_nodes, self.n_edges = dataset.n_nodes[self.indices], dataset.n_edges[self.indices]
        self.max_in_degree = dataset.max_in_degree  # an upper bound: the budgets stay valid

    def __len__(self) -> int:
        return len(self.indices)

    def item(self, i: int):
        return self.dataset.item(int(self.indices[i]))

    def gather(self, indices) -> Batch:
        return self.dataset.gather(self.indices[np.asarray(indices, np.int64)])

    def config_type(self, i: int) -> str:
        return self.dataset.config_type(int(self.indices[i]))


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """Prepared folders to train on (`jaxtl prepare`), how they are filtered and batched.

    Attributes:
        train_dir: the training set.
        valid_dir: the validation set; None: `valid_fraction` of train_dir's structures.
        valid_fraction: fraction held out when valid_dir is None.
        batch_size, valid_batch_size: structures per padded (device) batch.
        seed: seed of the split and of the epoch order.
        max_force: drop structures with any |F| component above this (eV/A); None keeps all.
        train_fraction: train on this seeded fraction of the training structures.
        e0s: mace's --E0s (`jaxtl.train.e0s`); None: the IsolatedAtom frames when the
            training set has them, else "average".
    """

    train_dir: str
    valid_dir: str | None = None
    valid_fraction: float = 0.1
    batch_size: int = 10
    valid_batch_size: int = 10
    seed: int = 123
    max_force: float | None = None
    train_fraction: float = 1.0
    e0s: E0Spec | None = None


@dataclasses.dataclass(frozen=True)
class LabelScan:
    """What the recipe needs of every structure of a prepared set, from one pass.

    Attributes:
        n_atoms: [n] atoms per structure.
        energy: [n] total energy (eV); NaN where it is not a label.
        max_force: [n] largest |F| component (eV/A); NaN without force labels.
        force_sq: [n] sum of squared force components (eV^2/A^2); 0 without.
        composition: [n] row of `counts` of each structure.
        counts: [n_compositions, n_elements] atoms of each element of `elements`.
        elements: [n_elements] sorted atomic numbers present.
        isolated: [n] whether the structure is an IsolatedAtom frame.
    """

    n_atoms: np.ndarray
    energy: np.ndarray
    max_force: np.ndarray
    force_sq: np.ndarray
    composition: np.ndarray
    counts: np.ndarray
    elements: np.ndarray
    isolated: np.ndarray


def scan_labels(dataset) -> LabelScan:
    """One pass over `dataset` (an `OnDiskDataset` or `Subset`), one structure at a time."""
    n = len(dataset)
    n_atoms = np.zeros(n, np.int64)
    energy, max_force = np.full(n, np.nan), np.full(n, np.nan)
    force_sq, composition = np.zeros(n), np.zeros(n, np.int64)
    rows: dict[tuple, int] = {}
    for i in range(n):
        item = dataset.item(i)
        z, k = np.unique(np.asarray(item.graph.atomic_numbers), return_counts=True)
        composition[i] = rows.setdefault(tuple(zip(z.tolist(), k.tolist())), len(rows))
        n_atoms[i] = int(k.sum())
        if float(item.labels.energy_weight[0]) > 0:
            energy[i] = float(item.labels.energy[0])
        if float(item.labels.forces_weight[0]) > 0 and n_atoms[i]:
            forces = np.asarray(item.labels.forces)
            max_force[i], force_sq[i] = float(np.abs(forces).max()), float(np.sum(forces**2))
    elements = np.array(sorted({z for key in rows for z, _ in key}), np.int64)
    column = {int(z): j for j, z in enumerate(elements)}
    counts = np.zeros((len(rows), len(elements)))
    for key, r in rows.items():
        for z, k in key:
            counts[r, column[z]] = k
    isolated = np.array([n_atoms[i] == 1 and dataset.config_type(i) == ISOLATED_ATOM for i in range(n)], bool)
    return LabelScan(n_atoms, energy, max_force, force_sq, composition, counts, elements, isolated)


def _kept(scan: LabelScan, indices: np.ndarray, max_force: float | None, where: str) -> np.ndarray:
    """`indices` less the IsolatedAtom frames and (with `max_force`) the structures above it."""
    indices = indices[~scan.isolated[indices]]
    if max_force is None:
        return indices
    keep = ~(scan.max_force[indices] > max_force)  # NaN (no forces) is kept
    if not keep.all():
        log.warning(
            "%s: dropped %d of %d structures with |F| > %g eV/A", where, int((~keep).sum()), len(indices), max_force
        )
    return indices[keep]


def elements(scan: LabelScan, indices: np.ndarray) -> set[int]:
    """Atomic numbers present in the structures `indices`."""
    return {int(z) for z in scan.elements[scan.counts[np.unique(scan.composition[indices])].sum(axis=0) > 0]}


def split(data: PreparedData, scan: LabelScan, valid_scan: LabelScan | None = None) -> tuple[Subset, Subset | None]:
    """(training subset, validation subset) in the order and with the rules of
    `jaxtl.train.data.read_splits`; `scan` is the training folder's, `valid_scan` the
    validation folder's (when `data.valid_dir` is given)."""
    full = OnDiskDataset(data.train_dir)
    train_idx = _kept(scan, np.arange(len(full)), data.max_force, data.train_dir)
    rng = np.random.default_rng(data.seed)
    if data.valid_dir:
        valid_full = OnDiskDataset(data.valid_dir)
        valid_scan = valid_scan or scan_labels(valid_full)
        valid = Subset(valid_full, _kept(valid_scan, np.arange(len(valid_full)), data.max_force, data.valid_dir))
    else:
        order = rng.permutation(len(train_idx))
        n_valid = max(1, int(round(data.valid_fraction * len(train_idx)))) if len(train_idx) > 1 else 0
        valid = Subset(full, train_idx[order[:n_valid]]) if n_valid else None
        train_idx = train_idx[order[n_valid:]]
    if data.train_fraction < 1.0:
        n_keep = max(1, int(round(data.train_fraction * len(train_idx))))
        train_idx = train_idx[np.sort(rng.permutation(len(train_idx))[:n_keep])]
    if not len(train_idx):
        raise DataError(f"{data.train_dir}: no training structures left after splitting and filtering")
    return Subset(full, train_idx), valid


def isolated_e0s(scan: LabelScan) -> dict[int, float]:
    """{Z: eV} of the IsolatedAtom frames; one without energy gives 0 with a warning, as
    `jaxtl.train.e0s.isolated_e0s` does."""
    out = {}
    for i in np.flatnonzero(scan.isolated):
        z = int(scan.elements[np.flatnonzero(scan.counts[scan.composition[i]])[0]])
        if not np.isfinite(scan.energy[i]):
            warnings.warn(f"structure {i}: IsolatedAtom without energy, E0 of Z={z} set to 0", stacklevel=2)
        out[z] = float(np.nan_to_num(scan.energy[i]))
    return out


def label_statistics(
    scan: LabelScan,
    train_idx: np.ndarray,
    atomic_numbers: Sequence[int],
    e0s: E0Spec | None = None,
    needed: Sequence[int] | None = None,
) -> tuple[np.ndarray, str, float, float]:
    """(E0s [n_elements], how they were found, scale, shift) of the training structures
    `train_idx`, as `train_from_scratch` finds them (`rms_forces_scaling`); `needed`:
    the elements that must get an E0 (default: those of `train_idx`)."""
    model_column = {int(z): j for j, z in enumerate(atomic_numbers)}
    missing = sorted(elements(scan, train_idx) - set(model_column))
    if missing:
        raise DataError(
            f"the training structures hold elements {missing} that the model's atomic_numbers "
            f"{list(atomic_numbers)} lack"
        )
    counts = np.zeros((len(scan.counts), len(atomic_numbers)))
    for k, z in enumerate(scan.elements):  # elements only of IsolatedAtom or filtered structures drop out
        if int(z) in model_column:
            counts[:, model_column[int(z)]] = scan.counts[:, k]
    labelled = train_idx[np.isfinite(scan.energy[train_idx])]
    rows, inverse = np.unique(scan.composition[labelled], return_inverse=True)
    multiplicity = np.bincount(inverse, minlength=len(rows)).astype(np.float64)
    table = EnergyTable(
        counts[rows], np.bincount(inverse, scan.energy[labelled], len(rows)) / multiplicity, multiplicity
    )
    isolated = isolated_e0s(scan)
    needed = sorted(elements(scan, train_idx)) if needed is None else needed
    e0, source = resolve_table_e0s(e0s, table, atomic_numbers, isolated, needed)
    per_atom = (scan.energy[labelled] - counts[scan.composition[labelled]] @ e0) / scan.n_atoms[labelled]
    shift = float(np.mean(per_atom)) if len(per_atom) else 0.0
    with_forces = train_idx[np.isfinite(scan.max_force[train_idx])]
    n_components = 3 * scan.n_atoms[with_forces].sum()
    scale = float(np.sqrt(scan.force_sq[with_forces].sum() / n_components)) if n_components else 1.0
    return e0, source, scale or 1.0, shift


def train_from_prepared(
    data: PreparedData,
    out_dir: str | Path,
    model: Mapping | None = None,
    train_config: TrainConfig | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train a new MACE on prepared folders, streaming. `model` holds MACEConfig fields
    (r_max is the prepared set's); each process reads only its own batches."""
    from jaxtl.model import MACE, MACEConfig, init_variables, make_predict
    from jaxtl.model_io import save_model

    cfg = train_config or TrainConfig()
    model = dict(model or {})
    scan = scan_labels(OnDiskDataset(data.train_dir))
    valid_scan = scan_labels(OnDiskDataset(data.valid_dir)) if data.valid_dir else scan
    train_set, valid_set = split(data, scan, valid_scan)
    if len(train_set.heads) > 1:
        raise DataError(
            f"{data.train_dir}: heads {', '.join(train_set.heads)}; training from a prepared set "
            "takes one head: prepare each head's data apart or train from the files"
        )
    if abs(float(model.get("r_max", train_set.r_max)) - train_set.r_max) > 1e-12:
        raise ValueError(
            f"{data.train_dir} was prepared with r_max {train_set.r_max} A, the model asks for "
            f"{model['r_max']} A: prepare it again with --r-max {model['r_max']}"
        )
    model["r_max"] = train_set.r_max
    zs = sorted(elements(scan, train_set.indices) | (elements(valid_scan, valid_set.indices) if valid_set else set()))
    model.setdefault("atomic_numbers", tuple(zs))
    e0, source, scale, shift = label_statistics(scan, train_set.indices, model["atomic_numbers"], data.e0s, zs)
    n_layers = int(model.get("num_interactions", MACEConfig.num_interactions))
    avg = float(train_set.n_edges.sum() / max(train_set.n_nodes.sum(), 1))
    model.setdefault("avg_num_neighbors", (avg,) * n_layers)
    model.setdefault("dtype", cfg.dtype)
    config = MACEConfig(**model)
    log.info(
        "streaming %d training structures from %s; E0s (%s) %s, scale %.4f, shift %.4f",
        len(train_set),
        data.train_dir,
        source,
        dict(zip(config.atomic_numbers, e0.round(4))),
        scale,
        shift,
    )

    variables = init_variables(config, seed=cfg.seed)
    constants = dict(variables["constants"])
    constants["atomic_energies"] = e0[None].astype(constants["atomic_energies"].dtype)
    constants["scale"] = np.array([scale], constants["scale"].dtype)
    constants["shift"] = np.array([shift], constants["shift"].dtype)
    variables = {"params": variables["params"], "constants": constants}

    dtype = np.float64 if cfg.dtype == "float64" else np.float32
    train_batches = streamed_batches(train_set, data.batch_size, data.seed, shuffle=True, dtype=dtype)
    valid_batches = (
        streamed_batches(valid_set, data.valid_batch_size, data.seed, shuffle=False, dtype=dtype)(0)
        if valid_set is not None
        else []
    )
    result = train(
        make_predict(MACE(config, cfg.backend)),
        variables,
        train_batches,
        valid_batches,
        cfg,
        out_dir,
        resume=resume,
        model_config=config.to_dict(),
    )
    save_model(
        Path(out_dir) / "model",
        config,
        jax.tree_util.tree_map(np.asarray, result.variables),
        {"trained_on": data.train_dir, "data": dataclasses.asdict(data), "metrics": result.metrics},
    )
    return result
