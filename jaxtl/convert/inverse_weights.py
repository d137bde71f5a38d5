"""Writing jaxtl variables into a mace-torch module: the inverse of `weights.py`.

Each `set_*` function copies one block's jaxtl parameters into the matching
mace-torch submodule; `pop`/`sub` walk the jaxtl tree and remove what they take,
so that `leftover` can name any variable that found no place (every leaf must be
used exactly once). `check_expressible` refuses configurations mace-torch cannot
build before any copying starts. torch is imported lazily, inside functions.
"""

from __future__ import annotations

import numpy as np

from jaxtl.convert.torch_reader import ConversionError
from jaxtl.model.config import MACEConfig
from jaxtl.model.irreps import ir_str
from jaxtl.model.radial import SILU_CST


class ExportError(ConversionError):
    """The jaxtl model cannot be written as a mace-torch model (the message says why)."""


# --------------------------------------------------------------------------------------
# what mace-torch can express


def check_expressible(config: MACEConfig) -> None:
    """Raise `ExportError` listing every part of `config` mace-torch has no way to build."""
    problems = []
    p = float(config.num_polynomial_cutoff)
    if p != int(p):
        problems.append(f"num_polynomial_cutoff={p} (mace-torch stores the envelope power as an integer)")
    if config.num_interactions > 1:
        if config.gate == "silu" and abs(config.gate_cst - SILU_CST) > 1e-15:
            problems.append(
                f"gate_cst={config.gate_cst} (mace-torch's SiLU readout gate is normalised by e3nn's "
                f"constant {SILU_CST})"
            )
    mlp = config.MLP_irreps.replace(" ", "")
    if not all(term.endswith("x0e") for term in mlp.split("+")):
        problems.append(f"MLP_irreps={config.MLP_irreps} (the readout MLP of mace-torch is scalar)")
    if config.model_type not in ("MACE", "ScaleShiftMACE"):
        problems.append(f"model_type={config.model_type}")
    if problems:
        raise ExportError("this jaxtl model cannot be written as a mace-torch model: " + "; ".join(problems))


# --------------------------------------------------------------------------------------
# walking the jaxtl variables: every leaf is taken exactly once


def plain(tree):
    if hasattr(tree, "items"):
        return {str(k): plain(v) for k, v in tree.items()}
    return np.asarray(tree)


def pop(tree: dict, key: str, where: str):
    if key not in tree:
        raise ExportError(f"the jaxtl variables have no {where}/{key} (have {sorted(tree)})")
    return tree.pop(key)


def sub(tree: dict, key: str, where: str) -> dict:
    """A subtree, left in place (its leaves are popped one by one as they are used)."""
    if not isinstance(tree.get(key), dict):
        raise ExportError(f"the jaxtl variables have no {where}/{key} (have {sorted(tree)})")
    return tree[key]


def leftover(tree, where: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return [where]
    out = []
    for k, v in tree.items():
        out += leftover(v, f"{where}/{k}" if where else k)
    return out


def copy_into(dst, value, where: str) -> None:
    """Copy a numpy array into a torch parameter or buffer of the same number of elements."""
    import torch

    value = np.asarray(value)
    if value.size != dst.numel():
        raise ExportError(f"{where}: jaxtl has shape {value.shape}, mace-torch expects {tuple(dst.shape)}")
    with torch.no_grad():
        dst.copy_(torch.tensor(value).reshape(dst.shape).to(dst.dtype))


# --------------------------------------------------------------------------------------
# inverse maps, block by block (see weights.py for the forward direction)


def out_names(irreps_out) -> list[str]:
    keys = [ir_str(mul_ir.ir.l, mul_ir.ir.p) for mul_ir in irreps_out]
    return [k if keys.count(k) == 1 else f"{j}_{k}" for j, k in enumerate(keys)]


def set_o3_linear(linear, blocks: dict, where: str) -> None:
    """{irrep name: [sum mul_in, mul_out]} -> e3nn `o3.Linear` flat weight (instruction order)."""
    names = out_names(linear.irreps_out)
    rows: dict[int, int] = {}
    pieces = []
    for ins in linear.instructions:
        mul_in, mul_out = ins.path_shape
        name = names[ins.i_out]
        block = np.asarray(blocks[name]) if name in blocks else None
        if block is None:
            raise ExportError(f"the jaxtl variables have no {where}/{name}")
        start = rows.get(ins.i_out, 0)
        piece = block[start : start + mul_in]
        if piece.shape != (mul_in, mul_out):
            raise ExportError(
                f"{where}/{name}: jaxtl has shape {block.shape}, mace-torch needs rows "
                f"{start}:{start + mul_in} of width {mul_out}"
            )
        pieces.append(piece.reshape(-1))
        rows[ins.i_out] = start + mul_in
    for i_out, used in rows.items():
        name = names[i_out]
        if np.asarray(blocks[name]).shape[0] != used:
            raise ExportError(
                f"{where}/{name}: jaxtl has {np.asarray(blocks[name]).shape[0]} input rows, mace-torch {used}"
            )
    extra = set(blocks) - {names[i] for i in rows}
    if extra:
        raise ExportError(f"{where}: jaxtl has weights for outputs {sorted(extra)} that mace-torch does not")
    copy_into(linear.weight, np.concatenate(pieces) if pieces else np.zeros(0), where)
    for i_out in rows:
        blocks.pop(names[i_out])


def set_element_linear(fctp, blocks: dict, num_elements: int, where: str) -> None:
    """{irrep: [Z, sum mul_in, mul_out]} -> FullyConnectedTensorProduct(x, one-hot) flat weight."""
    names = out_names(fctp.irreps_out)
    rows: dict[int, int] = {}
    pieces = []
    for ins in fctp.instructions:
        mul_in, z, mul_out = ins.path_shape
        if z != num_elements:
            raise ExportError(f"{where}: mace-torch couples {z} elements, the model has {num_elements}")
        name = names[ins.i_out]
        if name not in blocks:
            raise ExportError(f"the jaxtl variables have no {where}/{name}")
        block = np.asarray(blocks[name])
        start = rows.get(ins.i_out, 0)
        piece = block[:, start : start + mul_in]
        if piece.shape != (z, mul_in, mul_out):
            raise ExportError(
                f"{where}/{name}: jaxtl has shape {block.shape}, mace-torch needs "
                f"[{z}, {start}:{start + mul_in}, {mul_out}]"
            )
        pieces.append(piece.transpose(1, 0, 2).reshape(-1))
        rows[ins.i_out] = start + mul_in
    extra = set(blocks) - {names[i] for i in rows}
    if extra:
        raise ExportError(f"{where}: jaxtl has weights for outputs {sorted(extra)} that mace-torch does not")
    copy_into(fctp.weight, np.concatenate(pieces), where)
    for i_out in rows:
        blocks.pop(names[i_out])


def set_fcnet(net, layers: dict, where: str) -> None:
    """{layer_k: [h_in, h_out]} -> e3nn FullyConnectedNet."""
    for k in range(len(net.hs) - 1):
        copy_into(getattr(net, f"layer{k}").weight, pop(layers, f"layer_{k}", where), f"{where}/layer_{k}")
    if layers:
        raise ExportError(f"{where}: jaxtl has layers {sorted(layers)} that mace-torch does not")


def set_layernorm_mlp(net, tree: dict, where: str) -> None:
    """flax Dense/LayerNorm params -> mace RadialMLP (torch Linear / LayerNorm / SiLU)."""
    import torch

    n_lin = n_norm = 0
    for mod in net.net:
        if isinstance(mod, torch.nn.Linear):
            name = f"linear_{n_lin}"
            dense = sub(tree, name, where)
            copy_into(mod.weight, np.asarray(pop(dense, "kernel", f"{where}/{name}")).T, f"{where}/{name}/kernel")
            copy_into(mod.bias, pop(dense, "bias", f"{where}/{name}"), f"{where}/{name}/bias")
            n_lin += 1
        elif isinstance(mod, torch.nn.LayerNorm):
            name = f"norm_{n_norm}"
            norm = sub(tree, name, where)
            copy_into(mod.weight, pop(norm, "scale", f"{where}/{name}"), f"{where}/{name}/scale")
            copy_into(mod.bias, pop(norm, "bias", f"{where}/{name}"), f"{where}/{name}/bias")
            n_norm += 1


def set_linear_tree(linear, tree: dict, key: str, where: str) -> None:
    set_o3_linear(linear, sub(tree, key, where), f"{where}/{key}")


def set_interaction(block, params: dict, num_elements: int, where: str) -> None:
    set_linear_tree(block.linear_up, params, "linear_up", where)
    if type(block).__name__ == "RealAgnosticResidualNonLinearInteractionBlock":
        set_layernorm_mlp(block.conv_tp_weights, sub(params, "conv_tp_weights", where), f"{where}/conv_tp_weights")
        set_layernorm_mlp(block.density_fn, sub(params, "density_fn", where), f"{where}/density_fn")
        for key in ("skip_tp", "linear_res", "linear_1", "linear_2"):
            set_linear_tree(getattr(block, key), params, key, where)
        for key in ("source_embedding", "target_embedding"):
            emb = sub(params, key, where)
            copy_into(getattr(block, key).weight, pop(emb, "embeddings", f"{where}/{key}"), f"{where}/{key}/embeddings")
        copy_into(block.alpha, pop(params, "alpha", where), f"{where}/alpha")
        copy_into(block.beta, pop(params, "beta", where), f"{where}/beta")
        return
    set_fcnet(block.conv_tp_weights, sub(params, "conv_tp_weights", where), f"{where}/conv_tp_weights")
    set_linear_tree(block.linear, params, "linear", where)
    set_element_linear(block.skip_tp, sub(params, "skip_tp", where), num_elements, f"{where}/skip_tp")
    if hasattr(block, "density_fn"):
        set_fcnet(block.density_fn, sub(params, "density_fn", where), f"{where}/density_fn")


def set_product(product, params: dict, consts: dict, correlation: int, where: str) -> None:
    sc_params = sub(params, "symmetric_contraction", where)
    sc_consts = sub(consts, "symmetric_contraction", where)
    for contraction, mul_ir in zip(
        product.symmetric_contractions.contractions, product.symmetric_contractions.irreps_out
    ):
        name = f"contraction_{ir_str(mul_ir.ir.l, mul_ir.ir.p)}"
        w = sub(sc_params, name, f"{where}/symmetric_contraction")
        U = sub(sc_consts, name, f"{where}/symmetric_contraction")
        here = f"{where}/symmetric_contraction/{name}"
        copy_into(contraction.weights_max, pop(w, f"weights_{correlation}", here), f"{here}/weights_{correlation}")
        for i, wi in enumerate(contraction.weights):
            key = f"weights_{correlation - 1 - i}"
            copy_into(wi, pop(w, key, here), f"{here}/{key}")
        for nu in range(1, correlation + 1):
            copy_into(getattr(contraction, f"U_matrix_{nu}"), pop(U, f"U_{nu}", here), f"{here}/U_{nu}")
    set_linear_tree(product.linear, params, "linear", where)


def integer(value, where: str) -> int:
    v = float(np.asarray(value).reshape(()))
    if v != int(v):
        raise ExportError(f"{where}={v}: mace-torch stores it as an integer")
    return int(v)


def set_constants(model, config: MACEConfig, consts: dict) -> None:
    import torch

    radial = model.radial_embedding
    rc = sub(consts, "radial_embedding", "constants")
    where = "constants/radial_embedding"
    copy_into(radial.cutoff_fn.p, np.asarray(integer(pop(rc, "p", where), f"{where}/p")), f"{where}/p")
    copy_into(radial.cutoff_fn.r_max, pop(rc, "r_max", where), f"{where}/r_max")
    basis = radial.bessel_fn
    if config.radial_type == "bessel":
        copy_into(basis.bessel_weights, pop(rc, "bessel_weights", where), f"{where}/bessel_weights")
        copy_into(basis.prefactor, pop(rc, "prefactor", where), f"{where}/prefactor")
    elif config.radial_type == "gaussian":
        copy_into(basis.gaussian_weights, pop(rc, "gaussian_weights", where), f"{where}/gaussian_weights")
    if config.distance_transform == "Agnesi":
        t = radial.distance_transform
        for key in ("q", "p", "a"):
            copy_into(getattr(t, key), pop(rc, f"agnesi_{key}", where), f"{where}/agnesi_{key}")
        copy_into(t.covalent_radii, pop(rc, "covalent_radii", where), f"{where}/covalent_radii")
    elif config.distance_transform == "Soft":
        t = radial.distance_transform
        copy_into(t.alpha, pop(rc, "soft_alpha", where), f"{where}/soft_alpha")
        copy_into(t.covalent_radii, pop(rc, "covalent_radii", where), f"{where}/covalent_radii")
    with torch.no_grad():
        model.r_max.fill_(float(config.r_max))

    copy_into(
        model.atomic_energies_fn.atomic_energies,
        pop(consts, "atomic_energies", "constants"),
        "constants/atomic_energies",
    )
    if config.model_type == "ScaleShiftMACE":
        for key in ("scale", "shift"):
            copy_into(getattr(model.scale_shift, key), pop(consts, key, "constants"), f"constants/{key}")
    if config.pair_repulsion:
        zbl, zc = model.pair_repulsion_fn, sub(consts, "pair_repulsion", "constants")
        where = "constants/pair_repulsion"
        for key in ("c", "a_exp", "a_prefactor", "covalent_radii"):
            copy_into(getattr(zbl, key), pop(zc, key, where), f"{where}/{key}")
        copy_into(zbl.p, np.asarray(integer(pop(zc, "p", where), f"{where}/p")), f"{where}/p")
