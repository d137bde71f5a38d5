"""jaxtl model -> mace-torch `.model` file (the inverse of the converter), verified.

`to_torch_module` builds the mace-torch `MACE` / `ScaleShiftMACE` that a
`MACEConfig` describes and copies every jaxtl variable into it: parameters and
the stored buffers of `constants` (E0s, scale/shift, radial frequencies,
coupling tensors U, ZBL and distance-transform parameters). Every leaf must be
used exactly once, and reading the module back with the converter must give the
same config and bit-identical variables, so the map is checked to be the exact
inverse of `weights.read_variables` on each export.

`export_file` writes the module with `torch.save` (what mace's training script
writes, what LAMMPS / ASE / OpenMM tools read) atomically, after evaluating the
written file with mace-torch against jaxtl on verification structures.

torch is imported lazily, inside functions.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import numpy as np

from jaxtl.convert.inverse_weights import (
    ExportError,
    check_expressible,
    copy_into,
    leftover,
    plain,
    pop,
    set_constants,
    set_interaction,
    set_linear_tree,
    set_product,
    sub,
)
from jaxtl.convert.torch_reader import import_torch
from jaxtl.model.config import MACEConfig
from jaxtl.model.irreps import ir_str

# Largest relative difference (energy, forces, virials, stress) between the written file
# evaluated by mace-torch and jaxtl, both in float64 on the same (file-dtype) weights. A
# float32 file also holds float32-rounded e3nn constants (the Wigner 3j buffers of its
# tensor products), which jaxtl keeps exact: about 1e-9 relative, hence its own bound.
# (The weights themselves are checked bit for bit when the module is built.)
TOLERANCE = {"float64": 1e-10, "float32": 1e-6}
# a float32 file run in float32 against itself in float64: a sanity bound, not round-off
FLOAT32_DRIFT = 1e-2


# --------------------------------------------------------------------------------------
# building the module


def _constructor(config: MACEConfig, constants: dict):
    """(mace-torch class, keyword arguments) that build `config` (the inverse of read_config)."""
    import torch
    from e3nn import o3
    from mace import modules

    H = len(config.heads)
    e0 = np.asarray(constants["atomic_energies"], np.float64).reshape(H, config.num_elements)
    one_layer = config.num_interactions == 1
    kwargs = dict(
        r_max=float(config.r_max),
        num_bessel=int(config.num_bessel),
        num_polynomial_cutoff=int(config.num_polynomial_cutoff),
        max_ell=int(config.max_ell),
        interaction_cls=modules.interaction_classes[config.interaction_cls],
        interaction_cls_first=modules.interaction_classes[config.interaction_cls_first],
        num_interactions=int(config.num_interactions),
        num_elements=config.num_elements,
        hidden_irreps=o3.Irreps(config.hidden_irreps),
        MLP_irreps=o3.Irreps(config.MLP_irreps),
        # mace's own single-head files (remove_pt_head) keep E0s as [Z], scale/shift as scalars
        atomic_energies=e0[0] if H == 1 else e0,
        avg_num_neighbors=float(config.avg_num_neighbors[0]),  # per layer, set after building
        atomic_numbers=list(config.atomic_numbers),
        correlation=list(config.correlation),
        gate=torch.nn.functional.silu if config.gate == "silu" else None,
        pair_repulsion=bool(config.pair_repulsion),
        apply_cutoff=bool(config.apply_cutoff),
        use_reduced_cg=False,  # mace's CLI default; the U tensors come from jaxtl anyway
        use_so3=False,
        use_agnostic_product=bool(config.use_agnostic_product),
        use_last_readout_only=bool(config.use_last_readout_only) and not one_layer,
        distance_transform=config.distance_transform,
        edge_irreps=o3.Irreps(config.edge_irreps) if config.edge_irreps else None,
        use_edge_irreps_first=bool(config.use_edge_irreps_first),
        radial_MLP=list(config.radial_MLP),
        radial_type=config.radial_type,
        heads=list(config.heads),
        keep_last_layer_irreps=bool(config.keep_last_layer_irreps),
    )
    if config.model_type == "MACE":
        return modules.MACE, kwargs
    scale = np.asarray(constants["scale"], np.float64).reshape(H)
    shift = np.asarray(constants["shift"], np.float64).reshape(H)
    kwargs["atomic_inter_scale"] = float(scale[0]) if H == 1 else scale.tolist()
    kwargs["atomic_inter_shift"] = float(shift[0]) if H == 1 else shift.tolist()
    return modules.ScaleShiftMACE, kwargs


class _NotJaxtlBasis(Exception):
    """mace asked for a coupling tensor the jaxtl constants do not provide."""


@contextlib.contextmanager
def _jaxtl_coupling_basis(config: MACEConfig, constants: dict):
    """Let mace's SymmetricContraction take jaxtl's U tensors instead of recomputing them.

    mace computes U (`U_matrix_real`, seconds per contraction for correlation 3) while
    building; the exported model must hold jaxtl's U anyway. The requests come in
    construction order (layer, output irrep, nu = 1..correlation) and each is checked
    against the irrep, correlation and input dimension asked for.
    """
    from mace.modules import symmetric_contraction as sc_module

    from jaxtl.model.mace import layer_irreps

    queue = []
    for t, lay in enumerate(layer_irreps(config)):
        contractions = constants.get(f"products_{t}", {}).get("symmetric_contraction", {})
        for _, l, p in lay["hidden_out"]:
            U = contractions.get(f"contraction_{ir_str(l, p)}", {})
            for nu in range(1, config.correlation[t] + 1):
                queue.append((l, p, nu, U.get(f"U_{nu}")))
    queue.reverse()

    def supply(irreps_in, irreps_out, correlation, dtype=None, **_):
        import torch
        from e3nn import o3

        if not queue:
            raise _NotJaxtlBasis("more contractions than jaxtl has")
        l, p, nu, U = queue.pop()
        ((_, ir),) = o3.Irreps(irreps_out)
        dim = o3.Irreps(irreps_in).dim
        lead = () if l == 0 else (2 * l + 1,)
        if U is None or (ir.l, ir.p, correlation) != (l, p, nu) or np.shape(U)[:-1] != lead + (dim,) * nu:
            raise _NotJaxtlBasis(f"U for {ir} nu={correlation}")
        return [torch.tensor(np.asarray(U, np.float64), dtype=dtype)]

    original = sc_module.U_matrix_real
    sc_module.U_matrix_real = supply
    try:
        yield
    finally:
        sc_module.U_matrix_real = original
    if queue:
        raise _NotJaxtlBasis("fewer contractions than jaxtl has")


def _build(config: MACEConfig, constants: dict):
    """The float64 mace-torch module of `config`, its coupling tensors U taken from jaxtl."""
    torch = import_torch()
    from mace.tools import torch_tools

    def construct():
        with torch.random.fork_rng(devices=[]), torch_tools.default_dtype("float64"):
            torch.manual_seed(0)  # random initial weights, all overwritten; the global stream is untouched
            cls, kwargs = _constructor(config, constants)
            return cls(**kwargs)

    try:
        try:
            with _jaxtl_coupling_basis(config, constants):
                return construct()
        except _NotJaxtlBasis:
            # mace computes its own U; copying jaxtl's then names any tensor whose shape differs
            return construct()
    except ExportError:
        raise
    except Exception as err:  # mace's constructor asserts on shapes it cannot build
        raise ExportError(f"mace-torch cannot build this architecture ({type(err).__name__}: {err})") from err


def _normalised(config: MACEConfig) -> dict:
    """The config fields that decide the mace-torch architecture, in one canonical form."""
    from e3nn import o3

    d = config.to_dict()
    d.pop("dtype")
    d["hidden_irreps"] = str(o3.Irreps(config.hidden_irreps))
    d["MLP_irreps"] = str(o3.Irreps(config.MLP_irreps))
    d["edge_irreps"] = str(o3.Irreps(config.edge_irreps)) if config.edge_irreps else None
    d["num_polynomial_cutoff"] = float(config.num_polynomial_cutoff)
    if o3.Irreps(config.hidden_irreps).lmax == 0:
        d["keep_last_layer_irreps"] = False
    if config.num_interactions == 1:
        # one layer: scalar output, one linear readout, no gate (mace and jaxtl agree)
        d["hidden_irreps"] = str(o3.Irreps(config.hidden_irreps)[0])
        for key in ("MLP_irreps", "gate", "gate_cst", "use_last_readout_only", "keep_last_layer_irreps"):
            d.pop(key)
    return d


def _check_reads_back(model, config: MACEConfig, variables: dict) -> None:
    """The converter reading `model` must give back `config` and bit-identical variables."""
    import jax

    from jaxtl.convert.torch_reader import read_config
    from jaxtl.convert.weights import read_variables

    back = read_config(model)
    a, b = _normalised(config), _normalised(back)
    diff = {k: (a[k], b.get(k)) for k in a if a[k] != b.get(k)}
    if diff:
        raise ExportError(f"mace-torch builds a different model from this config (jaxtl, mace-torch): {diff}")
    flat_a = {
        jax.tree_util.keystr(p): np.asarray(x, np.float64)
        for p, x in jax.tree_util.tree_flatten_with_path(variables)[0]
    }
    flat_b = {
        jax.tree_util.keystr(p): np.asarray(x, np.float64)
        for p, x in jax.tree_util.tree_flatten_with_path(read_variables(model, back))[0]
    }
    if flat_a.keys() != flat_b.keys():
        raise ExportError(
            f"exported variables differ in layout: missing {sorted(flat_a.keys() - flat_b.keys())[:6]}, "
            f"extra {sorted(flat_b.keys() - flat_a.keys())[:6]}"
        )
    bad = [k for k in flat_a if flat_a[k].shape != flat_b[k].shape or not np.array_equal(flat_a[k], flat_b[k])]
    if bad:
        raise ExportError(f"exported variables do not read back identically: {bad[:6]}")


def to_torch_module(config: MACEConfig, variables: dict, dtype: str | None = None):
    """The mace-torch `MACE` / `ScaleShiftMACE` module equal to a jaxtl model.

    config: the jaxtl MACEConfig; variables: {"params", "constants"} (numpy or jax arrays).
    dtype: "float64" or "float32" of the module (default: config.dtype).
    Returns a torch.nn.Module in eval mode. Raises `ExportError` when mace-torch cannot
    express the config or the variables do not fit it.
    """
    dtype = dtype or config.dtype
    if dtype not in ("float32", "float64"):
        raise ExportError(f"dtype must be float32 or float64, not {dtype!r}")
    check_expressible(config)
    tree = plain(variables)
    if set(tree) != {"params", "constants"}:
        raise ExportError(f"variables must be {{'params', 'constants'}}, got {sorted(tree)}")
    reference = plain(variables)
    params, consts = tree["params"], tree["constants"]
    model = _build(config, consts)

    Z = config.num_elements
    emb = sub(params, "node_embedding", "params")
    copy_into(
        model.node_embedding.linear.weight,
        pop(emb, "embeddings", "params/node_embedding"),
        "params/node_embedding/embeddings",
    )
    set_constants(model, config, consts)
    for t, (block, product) in enumerate(zip(model.interactions, model.products)):
        set_interaction(block, sub(params, f"interactions_{t}", "params"), Z, f"params/interactions_{t}")
        block.avg_num_neighbors = float(config.avg_num_neighbors[t])
        set_product(
            product,
            sub(params, f"products_{t}", "params"),
            sub(consts, f"products_{t}", "constants"),
            config.correlation[t],
            f"params/products_{t}",
        )
    for i, readout in enumerate(model.readouts):
        r = sub(params, f"readouts_{i}", "params")
        if type(readout).__name__ == "LinearReadoutBlock":
            set_linear_tree(readout.linear, r, "linear", f"params/readouts_{i}")
        else:
            set_linear_tree(readout.linear_1, r, "linear_1", f"params/readouts_{i}")
            set_linear_tree(readout.linear_2, r, "linear_2", f"params/readouts_{i}")
    unused = leftover(tree)
    if unused:
        raise ExportError(
            f"mace-torch has no place for these jaxtl variables: {unused[:8]}"
            + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        )
    _check_reads_back(model, config, reference)
    model = model.double() if dtype == "float64" else model.float()
    return model.eval()


# --------------------------------------------------------------------------------------
# the file


def verify_module(torch_model, config: MACEConfig, variables: dict, log=print) -> dict:
    """Largest differences between `torch_model` and jaxtl on verification structures, per head.

    Both sides run in float64 on the same numbers (jaxtl's variables rounded to the
    module's dtype first); raises `ExportError` beyond TOLERANCE[module dtype]. A float32
    module is also run in float32, which must stay within FLOAT32_DRIFT of float64.
    """
    from jaxtl.convert.convert import compare_with_torch
    from jaxtl.convert.torch_eval import evaluate_torch
    from jaxtl.convert.verify import compare, verification_structures
    from jaxtl.model_io import cast_variables

    native = str(next(torch_model.parameters()).dtype).replace("torch.", "")
    rounded = cast_variables(variables, native)
    report = {}
    for head in config.heads:
        atoms = verification_structures(config.atomic_numbers, config.r_max)
        errors, ref64, _ = compare_with_torch(torch_model, config, rounded, atoms, "float64", head)
        worst = max(v for k, v in errors.items() if k.endswith("_rel") and not k.startswith("interaction"))
        log(f"torch vs jaxtl (float64, head {head}): " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
        if not worst <= TOLERANCE[native]:
            raise ExportError(
                f"the written mace-torch model differs from jaxtl by {worst:.2e} (relative, float64, "
                f"head {head}), above {TOLERANCE[native]:.0e}"
            )
        if native != "float64":
            own = evaluate_torch(torch_model, atoms, dtype=native, head=head, compute_stress=True)
            drift = compare(ref64, own, atoms)
            worst_native = max(drift["energy_rel"], drift["forces_rel"])
            log(
                f"torch {native} vs float64 (head {head}): energy_rel {drift['energy_rel']:.2e}, "
                f"forces_rel {drift['forces_rel']:.2e}"
            )
            if not worst_native <= FLOAT32_DRIFT:
                raise ExportError(
                    f"the mace-torch model in {native} differs from itself in float64 by "
                    f"{worst_native:.2e}, above {FLOAT32_DRIFT:.0e}"
                )
            errors[f"{native}_drift"] = worst_native
        report[head] = errors
    return report


def export_file(
    model_dir: str | Path, out_path: str | Path, dtype: str | None = None, head: str | None = None, log=print
) -> dict:
    """Write the jaxtl model folder `model_dir` as a mace-torch `.model` file, verified.

    dtype: "float64" or "float32" of the file (default: the model's). head: write only
    this head of a multi-head model. The file is written to a temporary sibling, loaded
    back with `torch.load`, evaluated by mace-torch against jaxtl, and renamed into place
    only when they agree to round-off; otherwise `ExportError` and nothing is left.
    Returns the verification report {head: {quantity: largest difference}}.
    """
    from jaxtl.convert.torch_eval import load_torch_model
    from jaxtl.heads import select_head
    from jaxtl.model_io import load_model_files

    torch = import_torch()
    config, variables, _ = load_model_files(model_dir)
    if head is not None:
        if head not in config.heads:
            raise ExportError(f"{model_dir}: head {head!r} is not one of {list(config.heads)}")
        config, variables = select_head(config, variables, head)
    dtype = dtype or config.dtype
    module = to_torch_module(config, variables, dtype)

    out_path = Path(out_path).absolute()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(module, tmp)
        written = load_torch_model(tmp)
        try:
            report = verify_module(written, config, variables, log=log)
        except ExportError as err:
            raise ExportError(f"{err}; nothing was written to {out_path}") from err
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    log(f"wrote {out_path} ({type(module).__name__}, {dtype}, heads {list(config.heads)})")
    return report


__all__ = ["ExportError", "check_expressible", "to_torch_module", "verify_module", "export_file"]
