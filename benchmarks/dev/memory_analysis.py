"""XLA's own memory accounting of energy+forces, from compilation alone (no run).

For rattled Cu fcc cubes of the given sizes through the MACE-MP-0-medium-shaped
stand-in model (as benchmarks/scale.py), compiles `LoadedModel.predict` (energy +
forces, no stress) for the padded graph's shapes and prints
`compiled.memory_analysis()`: arguments, outputs and temporaries in bytes. The temp
buffer is what a call allocates beyond its inputs and outputs, so it bounds the peak
of a run from below (the allocator's part comes on top; see jaxtl/_allocator.py).

    python benchmarks/dev/memory_analysis.py --sizes 2000,10000,30000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _harness as harness  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="medium", choices=("small", "medium"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--sizes", default="2000,10000,30000", help="comma list of approximate atom counts")
    args = p.parse_args(argv)

    torch_model = harness.build_torch_model(args.model)
    import jax
    import numpy as np

    from jaxtl.api import build_loaded_model
    from jaxtl.convert.convert import from_torch_module
    from jaxtl.convert.verify import jaxtl_batch

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    config, variables = from_torch_module(torch_model)
    loaded = build_loaded_model(config, variables, dtype=args.dtype)
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        atoms = harness.copper_cell(max(1, round((n / 4) ** (1 / 3))))
        graph = jaxtl_batch([atoms], config.r_max, np.dtype(args.dtype)).graph
        n_edges = int(np.asarray(graph.node_mask)[np.asarray(graph.receivers)].sum())
        shapes = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype), graph)
        del graph
        t0 = time.perf_counter()
        compiled = loaded._predict.lower(loaded.variables, shapes, False).compile()
        mem = compiled.memory_analysis()
        row = {
            "n_atoms": len(atoms),
            "n_edges": n_edges,
            "padded_edges": int(shapes.senders.shape[0]),
            "temp_MB": mem.temp_size_in_bytes / 1e6,
            "argument_MB": mem.argument_size_in_bytes / 1e6,
            "output_MB": mem.output_size_in_bytes / 1e6,
            "temp_bytes_per_edge": mem.temp_size_in_bytes / max(n_edges, 1),
            "compile_s": round(time.perf_counter() - t0, 1),
        }
        print("ROW " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
