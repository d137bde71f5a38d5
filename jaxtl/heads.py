"""Selecting one head of a multi-head MACE (mace's `remove_pt_head`, in jaxtl)."""

from __future__ import annotations

import copy
import math

import numpy as np

from jaxtl.model.config import MACEConfig


def select_head(config: MACEConfig, variables: dict, head: str) -> tuple[MACEConfig, dict]:
    """A single-head model equal to `head` of a multi-head one.

    E0s, scale/shift and readout weights keep the chosen head; the non-linear
    readout's second layer is rescaled by 1/sqrt(H) because its e3nn fan-in
    normalisation counted every head's hidden units.

    Examples:
        >>> config = MACEConfig(atomic_numbers=(29,), heads=("Default",))
        >>> select_head(config, {}, "Default")[0] is config  # a single-head model is returned as it is
        True
        >>> select_head(config, {}, "mp_pbe")
        Traceback (most recent call last):
        ...
        ValueError: head 'mp_pbe' is not one of the model's heads ['Default']
    """
    if head not in config.heads:
        raise ValueError(f"head {head!r} is not one of the model's heads {list(config.heads)}")
    H = len(config.heads)
    if H == 1:
        return config, variables
    h = config.heads.index(head)
    out = copy.deepcopy(variables)
    consts, params = out["constants"], out["params"]
    consts["atomic_energies"] = np.asarray(consts["atomic_energies"])[h : h + 1]
    for key in ("scale", "shift"):
        if key in consts:
            consts[key] = np.asarray(consts[key])[h : h + 1]
    mlp = int(config.MLP_irreps.split("x")[0])
    for name, readout in params.items():
        if not name.startswith("readouts_"):
            continue
        if "linear" in readout:
            readout["linear"]["0e"] = np.asarray(readout["linear"]["0e"])[:, h : h + 1]
        else:
            w1 = np.asarray(readout["linear_1"]["0e"])
            w2 = np.asarray(readout["linear_2"]["0e"])
            readout["linear_1"]["0e"] = w1[:, h * mlp : (h + 1) * mlp]
            readout["linear_2"]["0e"] = w2[h * mlp : (h + 1) * mlp, h : h + 1] / math.sqrt(H)
    return config.replace(heads=(head,)), out
