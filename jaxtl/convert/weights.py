"""Mapping a mace-torch module's tensors onto jaxtl's parameter tree.

Every mapping is driven by the torch objects' own instruction lists, and every
stored buffer (coupling tensors U, Bessel frequencies, E0s, scale/shift, ZBL and
transform parameters, covalent radii) is copied verbatim into `constants`.
"""

from __future__ import annotations

import math

import numpy as np

from jaxtl.convert.torch_reader import ConversionError, _np
from jaxtl.model.config import MACEConfig
from jaxtl.model.irreps import ir_str
from jaxtl.model.mace import layer_irreps


def _out_names(irreps_out) -> list[str]:
    keys = [ir_str(mul_ir.ir.l, mul_ir.ir.p) for mul_ir in irreps_out]
    return [k if keys.count(k) == 1 else f"{j}_{k}" for j, k in enumerate(keys)]


def o3_linear(linear) -> dict[str, np.ndarray]:
    """e3nn `o3.Linear` flat weight -> {irrep name: [sum mul_in, mul_out]}."""
    flat = _np(linear.weight)
    blocks: dict[int, list[np.ndarray]] = {}
    offset = 0
    for ins in linear.instructions:
        mul_in, mul_out = ins.path_shape
        w = flat[offset : offset + mul_in * mul_out].reshape(mul_in, mul_out)
        offset += mul_in * mul_out
        blocks.setdefault(ins.i_out, []).append(w)
        fan_in = sum(i.path_shape[0] for i in linear.instructions if i.i_out == ins.i_out)
        if abs(ins.path_weight - 1.0 / math.sqrt(fan_in)) > 1e-12:
            raise ConversionError(f"o3.Linear path weight {ins.path_weight} is not 1/sqrt(fan_in) ({fan_in})")
    if offset != flat.size:
        raise ConversionError(f"o3.Linear weight has {flat.size} numbers, instructions use {offset}")
    if getattr(linear, "bias", None) is not None and _np(linear.bias).size:
        raise ConversionError("o3.Linear with biases is not supported")
    names = _out_names(linear.irreps_out)
    return {names[j]: np.concatenate(ws, axis=0) for j, ws in sorted(blocks.items())}


def element_linear(fctp, num_elements: int) -> dict[str, np.ndarray]:
    """FullyConnectedTensorProduct(x, one-hot) flat weight -> {irrep: [Z, sum mul_in, mul_out]}."""
    flat = _np(fctp.weight)
    blocks: dict[int, list[np.ndarray]] = {}
    offset = 0
    for ins in fctp.instructions:
        mul_in, z, mul_out = ins.path_shape
        if z != num_elements:
            raise ConversionError(f"skip_tp couples {z} elements, the model has {num_elements}")
        w = flat[offset : offset + mul_in * z * mul_out].reshape(mul_in, z, mul_out)
        offset += w.size
        blocks.setdefault(ins.i_out, []).append(w.transpose(1, 0, 2))
    if offset != flat.size:
        raise ConversionError(f"skip_tp weight has {flat.size} numbers, instructions use {offset}")
    names = _out_names(fctp.irreps_out)
    return {names[j]: np.concatenate(ws, axis=1) for j, ws in sorted(blocks.items())}


def fcnet(net) -> dict[str, np.ndarray]:
    """e3nn FullyConnectedNet -> {layer_k: [h_in, h_out]}."""
    out = {}
    for k in range(len(net.hs) - 1):
        out[f"layer_{k}"] = _np(getattr(net, f"layer{k}").weight)
    return out


def layernorm_mlp(net) -> dict[str, dict[str, np.ndarray]]:
    """mace RadialMLP (torch Linear/LayerNorm/SiLU Sequential) -> flax Dense/LayerNorm params."""
    import torch

    out, n_lin, n_norm = {}, 0, 0
    for mod in net.net:
        if isinstance(mod, torch.nn.Linear):
            out[f"linear_{n_lin}"] = {"kernel": _np(mod.weight).T.copy(), "bias": _np(mod.bias)}
            n_lin += 1
        elif isinstance(mod, torch.nn.LayerNorm):
            if abs(mod.eps - 1e-5) > 1e-12:
                raise ConversionError(f"LayerNorm eps {mod.eps} is not 1e-5")
            out[f"norm_{n_norm}"] = {"scale": _np(mod.weight), "bias": _np(mod.bias)}
            n_norm += 1
    return out


def _interaction(block, cfg: MACEConfig) -> dict:
    Z = cfg.num_elements
    p = {"linear_up": o3_linear(block.linear_up)}
    cls = type(block).__name__
    if cls == "RealAgnosticResidualNonLinearInteractionBlock":
        p["conv_tp_weights"] = layernorm_mlp(block.conv_tp_weights)
        p["density_fn"] = layernorm_mlp(block.density_fn)
        p["skip_tp"] = o3_linear(block.skip_tp)
        p["linear_res"] = o3_linear(block.linear_res)
        p["linear_1"] = o3_linear(block.linear_1)
        p["linear_2"] = o3_linear(block.linear_2)
        C = block.source_embedding.irreps_out.dim
        p["source_embedding"] = {"embeddings": _np(block.source_embedding.weight).reshape(Z, C)}
        p["target_embedding"] = {"embeddings": _np(block.target_embedding.weight).reshape(Z, C)}
        p["alpha"] = _np(block.alpha).reshape(())
        p["beta"] = _np(block.beta).reshape(())
        return p
    p["conv_tp_weights"] = fcnet(block.conv_tp_weights)
    p["linear"] = o3_linear(block.linear)
    p["skip_tp"] = element_linear(block.skip_tp, Z)
    if hasattr(block, "density_fn"):
        p["density_fn"] = fcnet(block.density_fn)
    return p


def _product(product, hidden_out, correlation: int) -> tuple[dict, dict]:
    params, consts = {"symmetric_contraction": {}}, {"symmetric_contraction": {}}
    contractions = list(product.symmetric_contractions.contractions)
    if len(contractions) != len(hidden_out):
        raise ConversionError(f"product has {len(contractions)} contractions, expected {len(hidden_out)}")
    for contraction, (_, l, p) in zip(contractions, hidden_out):
        name = f"contraction_{ir_str(l, p)}"
        w = {f"weights_{correlation}": _np(contraction.weights_max)}
        for i, wi in enumerate(contraction.weights):
            w[f"weights_{correlation - 1 - i}"] = _np(wi)
        U = {f"U_{nu}": _np(getattr(contraction, f"U_matrix_{nu}")) for nu in range(1, correlation + 1)}
        params["symmetric_contraction"][name] = w
        consts["symmetric_contraction"][name] = U
    params["linear"] = o3_linear(product.linear)
    return params, consts


def read_variables(model, cfg: MACEConfig) -> dict:
    """All weights and buffers of `model` as jaxtl variables {"params", "constants"} (numpy)."""
    H, Z = len(cfg.heads), cfg.num_elements
    params: dict = {}
    consts: dict = {}
    params["node_embedding"] = {"embeddings": _np(model.node_embedding.linear.weight).reshape(Z, -1)}

    radial = model.radial_embedding
    rc = {"p": _np(radial.cutoff_fn.p).astype(np.float64).reshape(()), "r_max": _np(radial.cutoff_fn.r_max).reshape(())}
    basis = radial.bessel_fn
    if cfg.radial_type == "bessel":
        rc["bessel_weights"] = _np(basis.bessel_weights)
        rc["prefactor"] = _np(basis.prefactor).reshape(())
    elif cfg.radial_type == "gaussian":
        rc["gaussian_weights"] = _np(basis.gaussian_weights)
    if cfg.distance_transform == "Agnesi":
        t = radial.distance_transform
        rc.update(agnesi_q=_np(t.q).reshape(()), agnesi_p=_np(t.p).reshape(()), agnesi_a=_np(t.a).reshape(()))
        rc["covalent_radii"] = _np(t.covalent_radii)
    elif cfg.distance_transform == "Soft":
        t = radial.distance_transform
        rc.update(soft_alpha=_np(t.alpha).reshape(()), covalent_radii=_np(t.covalent_radii))
    consts["radial_embedding"] = rc

    e0 = np.atleast_2d(_np(model.atomic_energies_fn.atomic_energies))
    if e0.shape != (H, Z):
        e0 = e0.reshape(H, Z) if e0.size == H * Z else np.broadcast_to(e0, (H, Z)).copy()
    consts["atomic_energies"] = e0
    if cfg.model_type == "ScaleShiftMACE":
        consts["scale"] = np.broadcast_to(np.atleast_1d(_np(model.scale_shift.scale)), (H,)).copy()
        consts["shift"] = np.broadcast_to(np.atleast_1d(_np(model.scale_shift.shift)), (H,)).copy()
    if cfg.pair_repulsion:
        zbl = model.pair_repulsion_fn
        consts["pair_repulsion"] = {
            "c": _np(zbl.c),
            "a_exp": _np(zbl.a_exp).reshape(()),
            "a_prefactor": _np(zbl.a_prefactor).reshape(()),
            "covalent_radii": _np(zbl.covalent_radii),
            "p": _np(zbl.p).astype(np.float64).reshape(()),
        }

    for t, (block, product, lay) in enumerate(zip(model.interactions, model.products, layer_irreps(cfg))):
        params[f"interactions_{t}"] = _interaction(block, cfg)
        pp, pc = _product(product, lay["hidden_out"], cfg.correlation[t])
        params[f"products_{t}"] = pp
        consts[f"products_{t}"] = pc
    for i, readout in enumerate(model.readouts):
        if type(readout).__name__ == "LinearReadoutBlock":
            params[f"readouts_{i}"] = {"linear": o3_linear(readout.linear)}
        else:
            params[f"readouts_{i}"] = {"linear_1": o3_linear(readout.linear_1), "linear_2": o3_linear(readout.linear_2)}
    return {"params": params, "constants": consts}
