"""Reference evaluation of a mace-torch model: the torch side of every parity check.

This module imports torch and mace at module level; only conversion code and tests import
it (``import jaxtl`` never does). Everything here goes through mace-torch's own data
pipeline (``config_from_atoms`` -> ``AtomicData.from_config`` -> ``Batch.from_data_list``)
so that the numbers are exactly what mace-torch itself would produce.

Stress convention (that of mace-torch, which the JAX model must reproduce):

* mace builds the neighbour list on a *modified* cell: every non-periodic lattice row is
  replaced by ``5 * r_max * (max|positions| + 1) * e_axis`` (``get_neighborhood``), and that
  modified cell is what enters the volume. For full pbc this is the ASE cell; for a slab
  with pbc (T, T, F) the volume is ``|det|`` of the cell whose third row is that long
  vector along z (so stress = virial-like derivative / that large volume).
* ``virials = -dE/d(eps)`` for a symmetric strain ``eps`` applied to positions and cell,
  ``stress = -virials / volume`` (eV/A^3), entries with ``|stress| >= 1e10`` set to 0.
* For structures with **no** periodic direction this module returns ``stress`` as
  **zeros** (mace itself would return the derivative divided by the volume of an
  arbitrary box); ``virials`` are returned for every structure, periodic or not.
"""

from __future__ import annotations

import copy
import os
import pickle
import zipfile
from collections.abc import Sequence

import mace  # noqa: F401  (must precede e3nn: sets torch.load defaults e3nn relies on)
import numpy as np
import torch
from mace import data as mace_data
from mace.tools import torch_geometric, torch_tools
from mace.tools.utils import AtomicNumberTable

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
# Attributes every MACE energy model (any mace version since 2022) carries.
_MACE_ATTRIBUTES = ("interactions", "products", "readouts", "atomic_energies_fn", "r_max")


def load_torch_model(path: str | os.PathLike) -> torch.nn.Module:
    """Unpickle a mace-torch ``*.model`` file onto the CPU.

    Returns the ``torch.nn.Module`` exactly as saved (dtype unchanged, eval mode).
    Raises ``FileNotFoundError`` if ``path`` does not exist and ``ValueError`` naming the
    file and what was found when it is not a pickled MACE model: not a torch file at all
    (text, random pickle), a TorchScript archive, a state-dict/checkpoint dictionary, or a
    torch module that is not a MACE model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {path!r}")
    if _is_torchscript(path):
        raise ValueError(
            f"{path!r} is a TorchScript archive (e.g. a *_compiled.model or LAMMPS "
            "*.pt file), not a pickled mace-torch model; convert from the original "
            "*.model file written by mace's training script"
        )
    try:
        obj = torch.load(path, weights_only=False, map_location="cpu")
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        zipfile.BadZipFile,
        ModuleNotFoundError,
        AttributeError,
        UnicodeDecodeError,
        TypeError,
    ) as exc:
        raise ValueError(
            f"{path!r} could not be read as a torch model file: {_sniff(path)} ({type(exc).__name__}: {_short(exc)})"
        ) from exc
    if isinstance(obj, dict):
        keys = ", ".join(map(str, list(obj)[:6]))
        raise ValueError(
            f"{path!r} holds a dict (keys: {keys}{', ...' if len(obj) > 6 else ''}), "
            "i.e. a state_dict or training checkpoint without the architecture; a pickled "
            "MACE model (torch.save(model)) is needed"
        )
    if not isinstance(obj, torch.nn.Module):
        raise ValueError(f"{path!r} holds a {type(obj).__module__}.{type(obj).__qualname__}, not a torch MACE model")
    missing = [name for name in _MACE_ATTRIBUTES if not hasattr(obj, name)]
    if missing:
        raise ValueError(
            f"{path!r} holds a torch module of type {type(obj).__module__}."
            f"{type(obj).__qualname__} that is not a MACE model (missing: "
            f"{', '.join(missing)})"
        )
    return obj.eval()


def model_r_max(model: torch.nn.Module) -> float:
    """Cutoff radius in A (a 0-d buffer in new models, a plain float in 2022-era ones)."""
    return float(model.r_max)


def model_atomic_numbers(model: torch.nn.Module) -> list:
    """Element table in one-hot order (int64 buffer in new models, a list in old ones)."""
    return [int(z) for z in model.atomic_numbers]


def model_heads(model: torch.nn.Module) -> list:
    """Head names; models older than mace 0.3.7 have one unnamed head, called "Default"."""
    return list(getattr(model, "heads", None) or ["Default"])


def evaluate_torch(
    model: torch.nn.Module,
    atoms_list: Sequence,
    dtype: str = "float64",
    head: str | int | None = None,
    compute_stress: bool = True,
) -> dict[str, np.ndarray]:
    """Energies, forces and stress of ``atoms_list`` under a mace-torch model, in one batch.

    Args:
      model: a mace-torch MACE model (left untouched: a deep copy is cast to ``dtype``).
      atoms_list: ``ase.Atoms`` (or a list of them); pbc and cell are honoured.
      dtype: "float64" (parity reference, ``model.double()``) or "float32".
      head: head name or index for multi-head models. ``None``: each structure's
        ``atoms.info["head"]`` if set, else the model's only head, or the one called
        "default" (any case); otherwise a ``ValueError``.
      compute_stress: differentiate w.r.t. a symmetric strain as well (virials, stress).

    Returns numpy arrays in ``dtype`` (``node_energy`` always float64):
      energy [G] eV; node_energy [N] eV (E0 + scaled interaction energy per atom);
      interaction_energy [G] eV (energy minus sum of E0s); forces [N, 3] eV/A;
      stress [G, 3, 3] eV/A^3 (zeros for non-periodic structures, see module docstring);
      virials [G, 3, 3] eV; volume [G] A^3 (the volume mace divided by; NaN when no
      direction is periodic); ptr [G + 1] node offsets; num_edges [G].
    Without ``compute_stress`` the stress and virials entries are absent.
    """
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if not isinstance(atoms_list, (list, tuple)):
        atoms_list = [atoms_list]
    if len(atoms_list) == 0:
        raise ValueError("atoms_list is empty")

    model = copy.deepcopy(model)
    model = model.double() if dtype == "float64" else model.float()
    model.eval()

    heads = model_heads(model)
    head_names = [_resolve_head(heads, head, atoms) for atoms in atoms_list]
    z_table = AtomicNumberTable(model_atomic_numbers(model))
    r_max = model_r_max(model)
    known = set(z_table.zs)

    with torch_tools.default_dtype(dtype):
        data_list = []
        for atoms, head_name in zip(atoms_list, head_names):
            unknown = sorted(set(int(z) for z in atoms.numbers) - known)
            if unknown:
                raise ValueError(
                    f"structure contains elements {unknown} the model does not know "
                    f"(model elements: {list(z_table.zs)})"
                )
            config = mace_data.config_from_atoms(atoms, head_name=head_name)
            data_list.append(mace_data.AtomicData.from_config(config, z_table=z_table, cutoff=r_max, heads=heads))
        batch = torch_geometric.Batch.from_data_list(data_list)
        # The forward pass runs under the same default dtype, as in mace's own
        # calculator: ZBL's `pow(int Z, a_exp)` otherwise promotes to float32.
        out = model(
            batch.to_dict(),
            training=False,
            compute_force=True,
            compute_virials=compute_stress,
            compute_stress=compute_stress,
        )

    def to_np(x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy().copy()

    n_graphs = len(atoms_list)
    ptr = to_np(batch["ptr"])
    energy = to_np(out["energy"]).reshape(n_graphs)
    if out.get("interaction_energy") is not None:  # ScaleShiftMACE
        inter = to_np(out["interaction_energy"]).reshape(n_graphs)
    else:  # plain MACE: contributions[:, 0] is the E0 sum
        inter = energy - to_np(out["contributions"])[:, 0]
    result = {
        "energy": energy,
        "node_energy": to_np(out["node_energy"]).astype(np.float64),
        "interaction_energy": inter,
        "forces": to_np(out["forces"]),
        "ptr": ptr,
        "num_edges": np.array([int(d.edge_index.shape[1]) for d in data_list]),
    }
    if compute_stress:
        periodic = np.array([bool(np.any(a.get_pbc())) for a in atoms_list])
        cells = to_np(batch["cell"]).reshape(n_graphs, 3, 3)
        volume = np.abs(np.linalg.det(cells))
        volume[~periodic] = np.nan
        stress = to_np(out["stress"]).reshape(n_graphs, 3, 3)
        stress[~periodic] = 0.0
        result["stress"] = stress
        result["virials"] = to_np(out["virials"]).reshape(n_graphs, 3, 3)
        result["volume"] = volume
    return result


def _resolve_head(heads: list, head: str | int | None, atoms) -> str:
    if head is None:
        head = atoms.info.get("head") if hasattr(atoms, "info") else None
    if head is None:
        if len(heads) == 1:
            return heads[0]
        defaults = [h for h in heads if h.lower() == "default"]
        if defaults:
            return defaults[0]
        raise ValueError(f"multi-head model {heads}: pass head= (a name or an index)")
    if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
        if not -len(heads) <= head < len(heads):
            raise ValueError(f"head index {head} out of range for heads {heads}")
        return heads[head]
    if head not in heads:
        # mace's AtomicData would silently fall back to the last head; refuse instead.
        raise ValueError(f"unknown head {head!r}; model heads are {heads}")
    return head


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return False
    # TorchScript archives carry the serialized code; torch.save pickles do not.
    return any(n.split("/", 1)[-1].startswith("code/") or n.endswith("/constants.pkl") for n in names)


def _sniff(path: str) -> str:
    """A few words on what the file looks like, for error messages."""
    with open(path, "rb") as fh:
        head = fh.read(256)
    if not head:
        return "the file is empty"
    if zipfile.is_zipfile(path):
        return "a zip archive that torch cannot load"
    if head[:1] == b"\x80":
        return "a plain Python pickle, not a torch.save archive"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data of unknown format"
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    return f"a text file (starting {first!r})"


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text[:limit] + ("..." if len(text) > limit else "")
