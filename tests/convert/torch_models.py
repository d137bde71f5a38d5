"""Randomly initialised, then perturbed, float64 mace-torch models for parity tests.

Each factory ``f(seed=0) -> (model, description)`` builds a mace-torch model the way the
mace CLI would (``use_reduced_cg=False``, silu gate), in float64 and eval mode, then moves
every trainable parameter away from its initial value (see ``perturb``) so that no path is
silently zero or at a symmetric initial value. E0s, scale, shift and avg_num_neighbors are
set to non-trivial values. Building is deterministic in ``seed`` and leaves torch's global
RNG untouched.

``REGISTRY`` maps name -> factory. ``FAST`` lists the cheap ones (few channels, 4 elements,
well under a second per forward on CPU); ``FOUNDATION`` the MACE-MP-0 look-alikes
(89 elements, 128 channels), which take a few seconds to build.

Coverage (name: what it exercises):
  l0_interaction_residual  ScaleShiftMACE, Interaction/Residual (as the real model files),
                           8x0e, bessel, correlation 3, no transform
  l1_residual_gaussian     Residual/Residual, 8x0e+8x1o, gaussian basis, Agnesi, correlation 2,
                           MLP_irreps 8x0e, p=6 envelope
  plain_l2_chebyshev_soft  plain MACE class (no scale/shift), 8x0e+8x1o+8x2e, chebyshev basis,
                           Soft transform, ZBL (unscaled), correlation 2. mace-torch's forces
                           and stress here omit d(basis)/dr (torch's Chebyshev op has no
                           autograd): they are not -dE/dx, so a port matches torch only by
                           stopping the gradient through T_n(r)
  density_zbl_agnesi       Density/DensityResidual, 8x0e+8x1o, ZBL + Agnesi, correlation 3,
                           max_ell 3 (a small MP-0b3)
  l3_corr1_three_layers    hidden 4x0e+4x1o+4x2e+4x3o (max_L 3), correlation 1,
                           3 interactions, max_ell 3, MLP_irreps 32x0e
  corr4_small              correlation 4 (max_ell 1, 4x0e+4x1o), Residual/Residual
  single_layer_no_cutoff   num_interactions 1 (linear readout only), apply_cutoff False,
                           Density first block (cutoff enters the density), plain MACE
  multihead                2 heads ("pt_head", "Default"): per-head E0s, scale, shift;
                           MLP_irreps 8x0e (readout hidden 16x0e with head masking)
  nonlinear                RealAgnosticResidualNonLinearInteractionBlock both layers,
                           8x0e+8x1o, apply_cutoff False, alpha/beta perturbed
  nonlinear_edge_agnostic  NonLinear block with edge_irreps 4x0e+4x1o (also on the first
                           layer), use_agnostic_product, apply_cutoff True, ZBL
  mp0_medium               MACE-MP-0 medium shape: 89 elements, 128x0e+128x1o, max_ell 3,
                           correlation 3, r_max 6, 10 bessel, radial MLP [64,64,64],
                           Residual/Residual (4,688,656 parameters)
  mp0_small                MACE-MP-0 small shape: as medium with 128x0e (3,847,696 parameters)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import mace  # noqa: F401  (must precede e3nn)
import numpy as np
import torch
from e3nn import o3
from mace import modules
from mace.modules.symmetric_contraction import EmptyParam
from mace.tools import torch_tools

ELEMENTS_SMALL = [1, 6, 8, 29]  # H, C, O, Cu
ELEMENTS_89 = list(range(1, 90))

Factory = Callable[..., tuple[torch.nn.Module, str]]


@contextlib.contextmanager
def _seeded(seed: int):
    """Float64 default dtype and a private torch RNG stream for the duration."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch_tools.default_dtype("float64"):
            yield


def perturb(model: torch.nn.Module, seed: int, rel: float = 0.2) -> torch.nn.Module:
    """Add Gaussian noise to every trainable parameter, in place.

    Noise is ``rel * mean|p|`` per tensor, or ``rel * max(|c|, 1)`` for tensors that are
    constant at init (zeros, ones, a scalar such as the NonLinear block's alpha=20/beta=0,
    LayerNorm weights/biases), so that even zero-initialised paths carry signal.
    Structurally-zero product weights (mace ``EmptyParam``, frozen) are left at zero: a
    saved model can never have anything else there. ``beta`` is kept positive so the
    NonLinear block's denominator ``beta * density + alpha`` stays away from zero.
    """
    gen = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if isinstance(p, EmptyParam) or not p.requires_grad or p.numel() == 0:
                continue
            flat = p.detach().reshape(-1)
            if p.numel() == 1 or bool(torch.all(flat == flat[0])):
                size = rel * max(float(flat[0].abs()), 1.0)
            else:
                size = rel * float(flat.abs().mean())
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype) * size
            p.add_(noise)
            if name.endswith("beta"):
                p.abs_()
    return model


def _atomic_energies(zs: Sequence[int], n_heads: int, seed: int) -> np.ndarray:
    """E0s of a few eV, distinct per element (and per head when n_heads > 1)."""
    rng = np.random.default_rng(seed + 101)
    e0 = -rng.uniform(0.5, 8.0, (n_heads, len(zs))) - 0.05 * np.asarray(zs)[None, :]
    return e0[0] if n_heads == 1 else e0


def _build(
    *,
    seed: int,
    scale_shift: bool = True,
    atomic_numbers: Sequence[int] = ELEMENTS_SMALL,
    r_max: float = 5.0,
    num_bessel: int = 6,
    num_polynomial_cutoff: int = 5,
    max_ell: int = 2,
    interaction_first: str = "RealAgnosticInteractionBlock",
    interaction: str = "RealAgnosticResidualInteractionBlock",
    num_interactions: int = 2,
    hidden_irreps: str = "8x0e",
    MLP_irreps: str = "16x0e",
    correlation=3,
    radial_MLP: list[int] | None = None,
    radial_type: str = "bessel",
    distance_transform: str = "None",
    pair_repulsion: bool = False,
    apply_cutoff: bool = True,
    heads: list[str] | None = None,
    edge_irreps: str | None = None,
    use_edge_irreps_first: bool = False,
    use_agnostic_product: bool = False,
    avg_num_neighbors: float = 7.3,
    scale=1.3,
    shift=-0.4,
    perturbation: float = 0.2,
    gate="silu",
) -> torch.nn.Module:
    n_heads = len(heads) if heads else 1
    kwargs = dict(
        r_max=r_max,
        num_bessel=num_bessel,
        num_polynomial_cutoff=num_polynomial_cutoff,
        max_ell=max_ell,
        interaction_cls=modules.interaction_classes[interaction],
        interaction_cls_first=modules.interaction_classes[interaction_first],
        num_interactions=num_interactions,
        num_elements=len(atomic_numbers),
        hidden_irreps=o3.Irreps(hidden_irreps),
        MLP_irreps=o3.Irreps(MLP_irreps),
        atomic_energies=_atomic_energies(atomic_numbers, n_heads, seed),
        avg_num_neighbors=avg_num_neighbors,
        atomic_numbers=list(atomic_numbers),
        correlation=correlation,
        gate=torch.nn.functional.silu if gate == "silu" else None,
        pair_repulsion=pair_repulsion,
        apply_cutoff=apply_cutoff,
        use_reduced_cg=False,  # the CLI default; the class default is True
        use_agnostic_product=use_agnostic_product,
        distance_transform=distance_transform,
        edge_irreps=o3.Irreps(edge_irreps) if edge_irreps else None,
        use_edge_irreps_first=use_edge_irreps_first,
        radial_MLP=radial_MLP if radial_MLP is not None else [16, 16],
        radial_type=radial_type,
        heads=heads,
    )
    with _seeded(seed):
        if scale_shift:
            model = modules.ScaleShiftMACE(atomic_inter_scale=scale, atomic_inter_shift=shift, **kwargs)
        else:
            model = modules.MACE(**kwargs)
    model = model.double().eval()
    if perturbation:
        perturb(model, seed, perturbation)
    return model


def l0_interaction_residual(seed: int = 0):
    m = _build(seed=seed, hidden_irreps="8x0e", max_ell=3, num_bessel=8, correlation=3)
    return m, (
        "ScaleShiftMACE Interaction/Residual, 8x0e, max_ell 3, bessel 8, corr 3, "
        "no transform, MLP 16x0e (shape of the real model files)"
    )


def l1_residual_gaussian(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualInteractionBlock",
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        num_bessel=7,
        num_polynomial_cutoff=6,
        correlation=2,
        radial_type="gaussian",
        distance_transform="Agnesi",
        MLP_irreps="8x0e",
        avg_num_neighbors=9.1,
        scale=0.8,
        shift=0.25,
    )
    return m, ("ScaleShiftMACE Residual/Residual, 8x0e+8x1o, max_ell 2, gaussian 7, p=6, Agnesi, corr 2, MLP 8x0e")


def plain_l2_chebyshev_soft(seed: int = 0):
    m = _build(
        seed=seed,
        scale_shift=False,
        hidden_irreps="8x0e+8x1o+8x2e",
        max_ell=2,
        num_bessel=4,
        r_max=4.5,
        correlation=2,
        radial_type="chebyshev",
        distance_transform="Soft",
        pair_repulsion=True,
        avg_num_neighbors=5.5,
        perturbation=0.1,
    )
    # mace's Chebyshev basis is T_n(r) on the raw distance (no rescaling), so T_4(4.5) ~ 3e3
    # and random weights give 1e10 eV energies; a trained model would have learnt small
    # first-layer radial weights, so scale row n by 1 / |T_n(r_max)|.
    r = torch.tensor(4.5, dtype=torch.float64)
    with torch.no_grad():
        for inter in m.interactions:
            w = inter.conv_tp_weights.layer0.weight  # (num_basis, hidden), used as x @ W
            t_n = torch.stack([torch.special.chebyshev_polynomial_t(r, n) for n in range(1, w.shape[0] + 1)])
            w.div_(t_n.abs().unsqueeze(1))
    return m, (
        "plain MACE Interaction/Residual, 8x0e+8x1o+8x2e, max_ell 2, chebyshev 4, "
        "r_max 4.5, Soft transform, ZBL, corr 2. NB: torch.special.chebyshev_"
        "polynomial_t has no autograd, so mace-torch forces/stress treat the basis "
        "as constant and are NOT the gradient of the energy"
    )


def density_zbl_agnesi(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticDensityInteractionBlock",
        interaction="RealAgnosticDensityResidualInteractionBlock",
        hidden_irreps="8x0e+8x1o",
        max_ell=3,
        num_bessel=8,
        correlation=3,
        distance_transform="Agnesi",
        pair_repulsion=True,
        radial_MLP=[16, 16, 16],
        scale=1.7,
        shift=-0.9,
    )
    return m, (
        "ScaleShiftMACE Density/DensityResidual, 8x0e+8x1o, max_ell 3, ZBL + Agnesi, "
        "corr 3, radial MLP [16,16,16] (small MP-0b3)"
    )


def l3_corr1_three_layers(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualInteractionBlock",
        hidden_irreps="4x0e+4x1o+4x2e+4x3o",
        max_ell=3,
        num_interactions=3,
        correlation=1,
        MLP_irreps="32x0e",
        avg_num_neighbors=11.0,
    )
    return m, (
        "ScaleShiftMACE Residual x3, 4x0e+4x1o+4x2e+4x3o (max_L 3), max_ell 3, corr 1, 3 interactions, MLP 32x0e"
    )


def corr4_small(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualInteractionBlock",
        hidden_irreps="4x0e+4x1o",
        max_ell=1,  # U_4 is (2L+1) x D^4 x K with D = (max_ell+1)^2: keep D = 4
        num_bessel=5,
        correlation=4,
        radial_MLP=[8],
    )
    return m, "ScaleShiftMACE Residual/Residual, 4x0e+4x1o, max_ell 1, corr 4, radial MLP [8]"


def single_layer_no_cutoff(seed: int = 0):
    m = _build(
        seed=seed,
        scale_shift=False,
        interaction_first="RealAgnosticDensityInteractionBlock",
        num_interactions=1,
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        correlation=2,
        apply_cutoff=False,
    )
    return m, (
        "plain MACE, 1 interaction (Density; only a linear readout; hidden reduced to 8x0e), apply_cutoff False, corr 2"
    )


def multihead(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualInteractionBlock",
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        correlation=2,
        MLP_irreps="8x0e",
        heads=["pt_head", "Default"],
        scale=[1.3, 0.7],
        shift=[-0.4, 0.6],
    )
    return m, (
        "ScaleShiftMACE 2 heads (pt_head, Default), per-head E0s/scale/shift, 8x0e+8x1o, corr 2, MLP 8x0e per head"
    )


def nonlinear(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualNonLinearInteractionBlock",
        interaction="RealAgnosticResidualNonLinearInteractionBlock",
        hidden_irreps="8x0e+8x1o",
        max_ell=2,
        correlation=2,
        apply_cutoff=False,
        radial_MLP=[16, 16],
    )
    return m, (
        "ScaleShiftMACE NonLinear/NonLinear, 8x0e+8x1o, max_ell 2, corr 2, "
        "apply_cutoff False (smooth), alpha/beta/LayerNorm perturbed"
    )


def nonlinear_edge_agnostic(seed: int = 0):
    m = _build(
        seed=seed,
        interaction_first="RealAgnosticResidualNonLinearInteractionBlock",
        interaction="RealAgnosticResidualNonLinearInteractionBlock",
        hidden_irreps="8x0e+8x1o",
        edge_irreps="4x0e+4x1o",
        use_edge_irreps_first=True,
        use_agnostic_product=True,
        max_ell=2,
        correlation=3,
        pair_repulsion=True,
        radial_MLP=[16, 16],
    )
    return m, (
        "ScaleShiftMACE NonLinear/NonLinear with edge_irreps 4x0e+4x1o (first layer "
        "4x0e), use_agnostic_product, corr 3, ZBL, apply_cutoff True"
    )


def _mp0(seed: int, hidden: str):
    return _build(
        seed=seed,
        atomic_numbers=ELEMENTS_89,
        r_max=6.0,
        num_bessel=10,
        max_ell=3,
        interaction_first="RealAgnosticResidualInteractionBlock",
        hidden_irreps=hidden,
        correlation=3,
        radial_MLP=[64, 64, 64],
        avg_num_neighbors=61.96,
        scale=0.8,
        shift=-0.1,
        perturbation=0.1,
    )


def mp0_medium(seed: int = 0):
    return _mp0(seed, "128x0e+128x1o"), (
        "MACE-MP-0 medium shape: 89 el., 128x0e+128x1o, max_ell 3, corr 3, r_max 6, "
        "10 bessel, radial MLP [64,64,64], Residual/Residual"
    )


def mp0_small(seed: int = 0):
    return _mp0(seed, "128x0e"), (
        "MACE-MP-0 small shape: 89 el., 128x0e, max_ell 3, corr 3, r_max 6, 10 bessel, "
        "radial MLP [64,64,64], Residual/Residual"
    )


REGISTRY: dict[str, Factory] = {
    f.__name__: f
    for f in (
        l0_interaction_residual,
        l1_residual_gaussian,
        plain_l2_chebyshev_soft,
        density_zbl_agnesi,
        l3_corr1_three_layers,
        corr4_small,
        single_layer_no_cutoff,
        multihead,
        nonlinear,
        nonlinear_edge_agnostic,
        mp0_medium,
        mp0_small,
    )
}
FOUNDATION = ("mp0_medium", "mp0_small")
FAST = tuple(name for name in REGISTRY if name not in FOUNDATION)
