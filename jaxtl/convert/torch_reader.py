"""Reading a pickled mace-torch model: its configuration and its weights.

This is the only place (with `torch_eval`) that imports torch, lazily. The
reader works on the loaded `torch.nn.Module`; `load_torch_model` is the door.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxtl.model.config import MACEConfig
from jaxtl.model.interaction import INTERACTION_CLASSES
from jaxtl.model.radial import SILU_CST

SUPPORTED_MODELS = ("MACE", "ScaleShiftMACE")


class ConversionError(ValueError):
    """The file is not a mace-torch model jaxtl can convert (the message says why)."""


def import_torch():
    try:
        import mace  # noqa: F401  (must precede e3nn, which it patches for new torch)
        import torch
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "converting mace-torch models needs torch and mace-torch: pip install -e '.[convert]'"
        ) from err
    return torch


def load_torch_model(path: str | Path):
    """Unpickle a mace-torch `.model` file (the whole module) and check its kind.

    Raises `ConversionError` naming the file and what it holds when it is not a
    pickled MACE / ScaleShiftMACE (text, TorchScript archive, state dict, other class).
    """
    import_torch()
    from jaxtl.convert.torch_eval import load_torch_model as load

    try:
        obj = load(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConversionError(str(err)) from err
    name = type(obj).__name__
    if name not in SUPPORTED_MODELS:
        raise ConversionError(
            f"{path}: model class {name} is not supported (jaxtl converts {', '.join(SUPPORTED_MODELS)})"
        )
    return obj


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _scalar(x) -> float:
    return float(_np(x).reshape(-1)[0])


def _irreps_str(irreps) -> str:
    return str(irreps).replace(" ", "")


def _check_supported(model, inters) -> None:
    """ConversionError naming the first block or option jaxtl does not implement."""
    for block in inters:
        cls = type(block).__name__
        if cls not in INTERACTION_CLASSES:
            raise ConversionError(f"interaction block {cls} is not supported; jaxtl has {INTERACTION_CLASSES}")
    if getattr(model, "use_so3", False):
        raise ConversionError("models with use_so3=True are not supported")
    if hasattr(model, "joint_embedding") or hasattr(model, "embedding_readout"):
        raise ConversionError("models with joint (charge/spin) embeddings are not supported")
    for r in model.readouts:
        if type(r).__name__ not in ("LinearReadoutBlock", "NonLinearReadoutBlock"):
            raise ConversionError(f"readout block {type(r).__name__} is not supported")


def _radial_settings(radial) -> tuple[str, int, str]:
    """(radial_type, number of basis functions, distance transform) of a radial embedding."""
    basis = radial.bessel_fn
    basis_name = type(basis).__name__
    radial_type = {"BesselBasis": "bessel", "GaussianBasis": "gaussian", "ChebychevBasis": "chebyshev"}.get(basis_name)
    if radial_type is None:
        raise ConversionError(f"radial basis {basis_name} is not supported")
    if radial_type == "bessel":
        num_bessel = len(basis.bessel_weights)
    elif radial_type == "gaussian":
        num_bessel = len(basis.gaussian_weights)
    else:
        num_bessel = int(basis.num_basis)
    transform = "None"
    if hasattr(radial, "distance_transform"):
        transform = {"AgnesiTransform": "Agnesi", "SoftTransform": "Soft"}.get(type(radial.distance_transform).__name__)
        if transform is None:
            raise ConversionError(f"distance transform {type(radial.distance_transform).__name__} is not supported")
    return radial_type, num_bessel, transform


def _readout_settings(last, n_heads: int) -> tuple[int, str, float]:
    """(MLP channels per head, gate, gate constant) of the last readout block."""
    if type(last).__name__ != "NonLinearReadoutBlock":
        return 16, "silu", SILU_CST
    mlp_channels = last.hidden_irreps.count((0, 1)) // n_heads
    acts = getattr(last.non_linearity, "acts", None)
    gate_cst = float(acts[0].cst) if acts and hasattr(acts[0], "cst") else SILU_CST
    if acts and getattr(acts[0], "f", None) is None:
        return mlp_channels, "None", 1.0
    return mlp_channels, "silu", gate_cst


def read_config(model) -> MACEConfig:
    """Reconstruct the MACEConfig of a loaded mace-torch model (old pickles included)."""
    name = type(model).__name__
    inters = list(model.interactions)
    _check_supported(model, inters)
    radial = model.radial_embedding
    radial_type, num_bessel, transform = _radial_settings(radial)

    # products[0] outputs the full hidden irreps unless it is also the last layer
    hidden = model.products[0].linear.irreps_out if len(inters) > 1 else inters[0].hidden_irreps
    last = model.readouts[-1]
    heads = tuple(getattr(model, "heads", None) or ("Default",))
    mlp_channels, gate, gate_cst = _readout_settings(last, len(heads))
    conv_w = inters[0].conv_tp_weights
    radial_MLP = tuple(int(h) for h in conv_w.hs[1:-1])
    layer0 = getattr(conv_w, "layer0", None)
    if layer0 is not None and hasattr(layer0, "act") and hasattr(layer0.act, "cst"):
        if abs(float(layer0.act.cst) - SILU_CST) > 1e-15:
            raise ConversionError(f"radial MLP activation constant {layer0.act.cst} is not SiLU's {SILU_CST}")

    edge_irreps = getattr(model, "edge_irreps", None)
    correlation = tuple(len(p.symmetric_contractions.contractions[0].weights) + 1 for p in model.products)
    apply_cutoff = bool(getattr(model, "apply_cutoff", getattr(radial, "apply_cutoff", True)))
    cfg = MACEConfig(
        atomic_numbers=tuple(int(z) for z in _np(model.atomic_numbers).reshape(-1)),
        r_max=_scalar(model.r_max),
        num_bessel=int(num_bessel),
        num_polynomial_cutoff=_scalar(radial.cutoff_fn.p),
        radial_type=radial_type,
        distance_transform=transform,
        apply_cutoff=apply_cutoff,
        max_ell=int(model.spherical_harmonics.irreps_out.lmax),
        hidden_irreps=_irreps_str(hidden),
        edge_irreps=_irreps_str(edge_irreps) if edge_irreps is not None else None,
        use_edge_irreps_first=bool(getattr(model, "use_edge_irreps_first", False)),
        MLP_irreps=f"{mlp_channels}x0e",
        num_interactions=len(inters),
        interaction_cls_first=type(inters[0]).__name__,
        interaction_cls=type(inters[-1]).__name__,
        correlation=correlation,
        radial_MLP=radial_MLP,
        avg_num_neighbors=tuple(float(getattr(b, "avg_num_neighbors", 1.0)) for b in inters),
        model_type=name,
        heads=heads,
        pair_repulsion=hasattr(model, "pair_repulsion_fn"),
        use_agnostic_product=bool(getattr(model, "use_agnostic_product", False)),
        use_last_readout_only=len(model.readouts) == 1 and len(inters) > 1,
        keep_last_layer_irreps=_keeps_last_irreps(model),
        gate=gate,
        gate_cst=gate_cst,
        dtype=str(next(model.parameters()).dtype).replace("torch.", ""),
    )
    if len(set(type(b).__name__ for b in inters[1:])) > 1:
        raise ConversionError("models whose later interaction blocks differ in class are not supported")
    return cfg


def _keeps_last_irreps(model) -> bool:
    if len(model.interactions) < 2:
        return False
    last_out = model.products[-1].linear.irreps_out
    return last_out.lmax > 0


def model_dtype(model) -> Any:
    return next(model.parameters()).dtype
