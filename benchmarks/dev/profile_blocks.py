"""Where jaxtl's energy+forces time goes: every MACE block timed on its own.

The full model is run once eagerly with `flax.linen.intercept_methods` recording the
inputs of each block (radial embedding, interactions, conv-TP radial MLPs, products,
symmetric contractions, readouts). Each block is then jit-compiled alone and timed
forward, and forward + backward (the gradient of the sum of its float outputs with
respect to its float inputs: the work the force computation does in that block),
next to XLA's FLOP and byte estimates. Blocks nest (a product contains its symmetric
contraction), so the rows do not add up; the full model's energy+forces is the first row.

Experiments (alternatives computed here, outside jaxtl, numerics checked against jaxtl):
  * each output irrep of each symmetric contraction in four variants: contraction order
    features-first (jaxtl and mace-torch: monomials @ U_sym, then element weights) or
    weights-first (U_sym contracted with the weights of the elements present once, as at
    model load), times monomials built by gathers (jaxtl) or by one-hot matmuls;
  * the message pattern m * h[senders] scattered onto receivers at each layer's width,
    forward+backward: unsorted segment_sum (jaxtl), receiver-sorted segment_sum, and a
    dense one-hot matmul.

    python benchmarks/dev/profile_blocks.py --model medium --dtype float32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import _harness as harness  # noqa: E402

TRACKED = ("radial_embedding", "interactions", "products", "readouts", "node_embedding")
INNER = ("symmetric_contraction", "conv_tp_weights", "skip_tp", "linear_up", "linear")


def median_time(fn, args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cost(fn, args) -> dict:
    try:
        c = fn.lower(*args).compile().cost_analysis()
        c = c[0] if isinstance(c, (list, tuple)) else c
        return {"gflop": c.get("flops", 0.0) / 1e9, "gbytes": c.get("bytes accessed", 0.0) / 1e9}
    except Exception:
        return {"gflop": None, "gbytes": None}


def capture_blocks(module, variables, graph):
    """[(path, unbound module, its variables, args)] for the blocks worth timing."""
    import flax.linen as nn

    found = []

    def interceptor(next_fun, args, kwargs, context):
        mod = context.module
        path = tuple(getattr(mod, "path", ()) or ())
        if context.method_name == "__call__" and path:
            top = path[0].rsplit("_", 1)[0] if path[0][-1].isdigit() else path[0]
            if top in TRACKED and (len(path) == 1 or (len(path) == 2 and path[1] in INNER)):
                unbound, mvars = mod.unbind()
                found.append(("/".join(path), unbound, mvars, args, kwargs))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        module.apply(variables, graph)
    return found


def forward_and_backward(unbound, kwargs):
    """(jit forward, jit forward+backward) of `unbound.apply(variables, *args)`."""
    import jax
    import jax.numpy as jnp

    def fwd(v, args):
        return unbound.apply(v, *args, **kwargs)

    def fwd_bwd(v, args):
        leaves, treedef = jax.tree_util.tree_flatten(args)
        floating = [jnp.issubdtype(x.dtype, jnp.floating) for x in leaves]

        def loss(float_leaves):
            it = iter(float_leaves)
            full = [next(it) if f else x for x, f in zip(leaves, floating)]
            out = unbound.apply(v, *jax.tree_util.tree_unflatten(treedef, full), **kwargs)
            outs = [o for o in jax.tree_util.tree_leaves(out) if jnp.issubdtype(o.dtype, jnp.floating)]
            return sum(jnp.sum(o) for o in outs)

        return jax.value_and_grad(loss)([x for x, f in zip(leaves, floating) if f])

    return jax.jit(fwd), jax.jit(fwd_bwd)


def onehot_monomials(x, nu: int):
    """feature_monomials without gathers: prod_j (x @ S_j), S_j [dim, n_mono] one-hot.

    The gather's gradient is a scatter-add, which XLA:CPU runs as a serial loop; the
    selection matmul's gradient is another small matmul.
    """
    import jax
    import jax.numpy as jnp

    from jaxtl.model.common import monomials

    idx, _ = monomials(x.shape[-1], nu)
    out = None
    for j in range(nu):
        S = jax.nn.one_hot(jnp.asarray(idx[:, j]), x.shape[-1], dtype=x.dtype).T  # [dim, m]
        term = x @ S
        out = term if out is None else out * term
    return out


def contraction_variant(unbound, mvars, x, species, order: str, gather: bool):
    """One `Contraction` recomputed outside jaxtl, for timing alternatives.

    order "features_first": jaxtl's (and mace-torch's) order, P [n,c,m] @ U_sym [m, M*K],
    then the element weights; "weights_first": table[z] = sum_k U_sym[m,M,k] W[z,k,c] for
    the elements present, made once outside the timed function (as at model load), then
    sum_m P[n,c,m] table[z_n, m, M, c]. `gather`: monomials by gather (jaxtl) or by
    one-hot matmuls. Returns (jit fn(x, consts, local_species) -> [n, c, M], consts, local).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxtl.model.product import feature_monomials, symmetrize_U

    present = np.unique(np.asarray(species))
    local = jnp.asarray(np.searchsorted(present, np.asarray(species)), jnp.int32)
    dim = x.shape[-1]
    consts = []
    for nu in range(unbound.correlation, 0, -1):
        U = mvars["constants"][f"U_{nu}"]
        if unbound.l == 0 and U.ndim == nu + 1:
            U = U[None]
        U_sym = symmetrize_U(U.astype(x.dtype), dim, nu)  # [m, M, K]
        W = mvars["params"][f"weights_{nu}"][present].astype(x.dtype)  # [Zp, K, c]
        if order == "weights_first":
            consts.append(jnp.einsum("mMk,zkc->zmMc", U_sym, W))
        else:
            consts.append((U_sym, W))
    mono = feature_monomials if gather else onehot_monomials

    def contract(x, consts, local):
        out = 0.0
        for nu, c in zip(range(len(consts), 0, -1), consts):
            P = mono(x, nu)  # [n, c, m]
            if order == "weights_first":
                if c.shape[0] == 1:  # one element present: no per-node gather of the table
                    out = out + jnp.einsum("ncm,mMc->ncM", P, c[0])
                else:
                    out = out + jnp.einsum("ncm,nmMc->ncM", P, c[local])
            else:
                U_sym, W = c
                Q = jnp.einsum("ncm,mMk->ncMk", P, U_sym)
                out = out + jnp.einsum("ncMk,nkc->ncM", Q, W[local])
        return out

    return jax.jit(contract), consts, local


def scatter_variants(n_nodes: int, receivers, senders, width: int, dtype, repeats: int) -> dict:
    """ms of the message scatter/gather pattern at one layer's width, fwd+bwd."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    m = jnp.asarray(rng.normal(size=(receivers.shape[0], width)), dtype)
    h = jnp.asarray(rng.normal(size=(n_nodes, width)), dtype)
    order = np.argsort(np.asarray(receivers), kind="stable")
    rs, ss = jnp.asarray(np.asarray(receivers)[order]), jnp.asarray(np.asarray(senders)[order])
    onehot = jax.nn.one_hot(receivers, n_nodes, dtype=dtype)  # [E, n]
    variants = {
        "segment_sum (unsorted)": lambda m, h: jax.ops.segment_sum(m * h[senders], receivers, n_nodes),
        "segment_sum (sorted receivers)": lambda m, h: jax.ops.segment_sum(
            m * h[ss], rs, n_nodes, indices_are_sorted=True
        ),
        "one-hot matmul scatter": lambda m, h: onehot.T @ (m * h[senders]),
    }
    out = {}
    for name, f in variants.items():
        fb = jax.jit(jax.value_and_grad(lambda m, h, f=f: f(m, h).sum(), argnums=(0, 1)))
        out[name] = 1e3 * median_time(fb, (m, h), repeats)
    return out


def message_widths(config) -> list[int]:
    """Per-edge message width (channels x irrep dims over the TP paths) of each layer."""
    from jaxtl.model import tensor_product as tp
    from jaxtl.model.irreps import spherical_harmonics_irreps
    from jaxtl.model.mace import layer_irreps

    sh = spherical_harmonics_irreps(config.max_ell)
    widths = set()
    for lay in layer_irreps(config):
        paths = tp.conv_tp_paths(lay["edge"], sh, lay["target"])
        widths.add(sum(t.mul * (2 * t.l_out + 1) for t in paths))
    return sorted(widths)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(harness.MODELS), default="medium")
    p.add_argument("--dtype", choices=harness.DTYPES, default="float32")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--blocks-only", action="store_true", help="time the blocks only, not the contraction and scatter alternatives"
    )
    p.add_argument("--out", default=None, help="JSON path (default runs/profile_<model>_<dtype>_<device>.json)")
    args = p.parse_args(argv)
    device = harness.resolve_device(args.device)

    import jax
    import mace  # noqa: F401
    import numpy as np

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    from jaxtl.convert.convert import from_torch_module

    atoms = harness.copper_cell(3)
    config, variables = from_torch_module(harness.build_torch_model(args.model))
    side = harness.JaxSide(config, variables, atoms, args.dtype)
    loaded, graph = side.loaded, side.graph

    rows = []
    full_t = median_time(loaded._predict, (loaded.variables, graph, False), args.repeats)
    full_c = cost(loaded._predict, (loaded.variables, graph, False))
    rows.append({"block": "FULL energy+forces", "fwd_ms": None, "fwd_bwd_ms": 1e3 * full_t, **full_c})
    print(
        f"[profile] {args.model} {args.dtype} {device}: full energy+forces {1e3 * full_t:.1f} ms, "
        f"XLA {full_c['gflop']} GFLOP, {full_c['gbytes']} GB",
        flush=True,
    )

    blocks = capture_blocks(loaded.module, loaded.variables, graph)
    for path, unbound, mvars, bargs, bkwargs in blocks:
        fwd, fwd_bwd = forward_and_backward(unbound, bkwargs)
        t_f = median_time(fwd, (mvars, bargs), args.repeats)
        t_fb = median_time(fwd_bwd, (mvars, bargs), args.repeats)
        c = cost(fwd_bwd, (mvars, bargs))
        rows.append({"block": path, "fwd_ms": 1e3 * t_f, "fwd_bwd_ms": 1e3 * t_fb, **c})
        print(
            f"[profile] {path:45s} fwd {1e3 * t_f:8.1f} ms  fwd+bwd {1e3 * t_fb:8.1f} ms  "
            f"GFLOP {c['gflop'] if c['gflop'] is None else round(c['gflop'], 2)}  "
            f"GB {c['gbytes'] if c['gbytes'] is None else round(c['gbytes'], 2)}",
            flush=True,
        )

        if args.blocks_only or not path.endswith("symmetric_contraction"):
            continue
        from jaxtl.model.irreps import ir_str
        from jaxtl.model.product import Contraction

        for mul, l, par in unbound.irreps_out:
            # each output irrep's Contraction: jaxtl's own against the weights-first order
            name = f"contraction_{ir_str(l, par)}"
            con = Contraction(
                unbound.coupling_irreps, l, par, unbound.correlation, unbound.num_elements, mul, unbound.dtype
            )
            cvars = {"params": mvars["params"][name], "constants": mvars["constants"][name]}
            x, species = bargs[:2]  # the batch's element list, if any, is left out here
            ref_fwd, ref_fb = forward_and_backward(con, {})
            t_ref = median_time(ref_fwd, (cvars, (x, species)), args.repeats)
            t_ref_fb = median_time(ref_fb, (cvars, (x, species)), args.repeats)
            ref = np.asarray(ref_fwd(cvars, (x, species)))
            row = {"block": f"{path}/{name}", "fwd_ms": 1e3 * t_ref, "fwd_bwd_ms": 1e3 * t_ref_fb}
            for order in ("features_first", "weights_first"):
                for gather in (True, False):
                    fn, consts, local = contraction_variant(con, cvars, x, species, order, gather)
                    fb = jax.jit(jax.value_and_grad(lambda x, c, s, fn=fn: fn(x, c, s).sum()))
                    t_v = median_time(fn, (x, consts, local), args.repeats)
                    t_vfb = median_time(fb, (x, consts, local), args.repeats)
                    new = np.asarray(fn(x, consts, local))
                    err = float(np.max(np.abs(ref - new)) / max(np.max(np.abs(ref)), 1e-30))
                    key = f"{order}_{'gather' if gather else 'onehot'}"
                    row[key] = {"fwd_ms": 1e3 * t_v, "fwd_bwd_ms": 1e3 * t_vfb, "rel_err": err}
                    print(
                        f"[profile]   {name} {key:26s} fwd {1e3 * t_v:8.1f} ms  fwd+bwd "
                        f"{1e3 * t_vfb:8.1f} ms  (rel. diff to jaxtl {err:.1e})",
                        flush=True,
                    )
            rows.append(row)

    g = side.graph
    n_nodes = int(g.positions.shape[0])
    for width in [] if args.blocks_only else message_widths(config):
        sv = scatter_variants(n_nodes, g.receivers, g.senders, width, np.dtype(args.dtype), args.repeats)
        rows.append({"block": f"message gather*scatter, width {width}", "variants_fwd_bwd_ms": sv})
        print(
            f"[profile] gather*scatter fwd+bwd, width {width}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in sv.items()),
            flush=True,
        )

    out = Path(args.out) if args.out else harness.ROOT / "runs" / f"profile_{args.model}_{args.dtype}_{device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"model": args.model, "dtype": args.dtype, "device": device, "n_cpus": os.cpu_count(), "rows": rows},
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
