"""A/B in one process of the memory changes to energy+forces on a small cell.

Side `new`: the model as it is. Side `old`, traced with
  * `--base REV`: `tensor_product.node_major_messages` as at git revision REV (its
    node messages mapped by the linear after the loop, as before);
  * `--recompute`: the new side instead recomputes the edge embedding in the backward
    pass (`mace.RECOMPUTE_EDGE_EMBEDDING` = 0 while it is traced), to price it.
Timed alternating call by call (benchmarks/_harness.py `interleaved`), on the rattled
108-atom Cu cell (`--cells 3`).

    python benchmarks/dev/ab_edge_remat.py --base HEAD --model medium --dtype float32 --repeats 40
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _harness as harness  # noqa: E402


def base_node_major(rev: str):
    """node_major_messages of jaxtl/model/tensor_product.py at `rev`, node_fn applied after."""
    root = Path(__file__).resolve().parents[2]
    src = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:jaxtl/model/tensor_product.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    base = types.ModuleType("tensor_product_base")
    exec(compile(src, "tensor_product_base", "exec"), base.__dict__)

    def node_major_messages(*args, node_fn=None, **kw):
        out = base.node_major_messages(*args, **kw)
        return out if node_fn is None else node_fn(out)

    return node_major_messages


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="medium", choices=("small", "medium"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--cells", type=int, default=3)
    p.add_argument("--repeats", type=int, default=40)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--base", help="git revision of the old side's node_major_messages")
    g.add_argument("--recompute", action="store_true", help="new side recomputes the edge embedding")
    args = p.parse_args(argv)
    torch_model = harness.build_torch_model(args.model)
    import jax
    import numpy as np

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.api import build_loaded_model
    from jaxtl.convert.convert import from_torch_module
    from jaxtl.convert.verify import jaxtl_batch

    config, variables = from_torch_module(torch_model)
    atoms = harness.copper_cell(args.cells)
    graph = jax.device_put(jaxtl_batch([atoms], config.r_max, np.dtype(args.dtype)).graph)
    new = build_loaded_model(config, variables, dtype=args.dtype)
    old = build_loaded_model(config, variables, dtype=args.dtype)
    from jaxtl.model import mace, tensor_product

    if args.recompute:
        with harness.swapped(mace, "RECOMPUTE_EDGE_EMBEDDING", 0):
            out_new = new.predict(graph, compute_stress=False)
        out_old = old.predict(graph, compute_stress=False)
    else:
        out_new = new.predict(graph, compute_stress=False)
        with harness.swapped(tensor_product, "node_major_messages", base_node_major(args.base)):
            out_old = old.predict(graph, compute_stress=False)
    diff = float(np.max(np.abs(np.asarray(out_new["forces"]) - np.asarray(out_old["forces"]))))

    class Side:
        def __init__(self, loaded):
            self.loaded = loaded

        def __call__(self):
            return self.loaded.predict(graph, compute_stress=False)

        sync = staticmethod(jax.block_until_ready)

    _, (t_new, t_old) = harness.interleaved([Side(new), Side(old)], args.repeats, warmup=3)
    m_new, m_old = statistics.median(t_new), statistics.median(t_old)
    what = "recomputed embedding vs kept" if args.recompute else f"working tree vs node_major_messages at {args.base}"
    print(
        f"{len(atoms)} atoms, {args.model} {args.dtype}, {what}: new {1e3 * m_new:.1f} ms, "
        f"old {1e3 * m_old:.1f} ms (median of {args.repeats}), ratio old/new {m_old / m_new:.3f}; "
        f"max |force difference| {diff:.2e} eV/A; load average {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
