"""XLA compiler options against XLA's defaults on the training step of bench_train_step.py, one process.

The step is traced and lowered once, then compiled once per option set
(`Lowered.compile(compiler_options=...)`, XLA's DebugOptions by name), and the compiled
programs are called in strict alternation on the same inputs, so that every side sees the
same load. Printed per side: median and fastest wall time, median process CPU time (steadier
on a machine shared with other processes), and the largest parameter difference after one
step against the defaults. An option this XLA does not know, or a value it refuses, is
reported and left out.

    python benchmarks/dev/ab_xla_options.py xla_cpu_prefer_vector_width=512 \\
        xla_cpu_multi_thread_eigen=false --hidden 32x0e --dtype float32 --repeats 15

Each positional argument is one side: comma-separated NAME=VALUE pairs (true/false for
booleans, integers as digits, enum values by name).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import bench_train_step as bench  # noqa: E402


def parse_options(spec: str) -> dict:
    """'a=true,b=512' -> {'a': True, 'b': 512}."""

    def value(v: str):
        if v in ("true", "false"):
            return v == "true"
        return int(v) if v.lstrip("-").isdigit() else v

    pairs = [kv.split("=", 1) for kv in spec.split(",") if kv]
    if any(len(kv) != 2 for kv in pairs):
        raise SystemExit(f"option set {spec!r}: expected NAME=VALUE[,NAME=VALUE...]")
    return {k: value(v) for k, v in pairs}


def compiled_sides(lowered, specs: list[str]) -> dict:
    """{name: compiled step}: XLA's defaults, then each option set XLA accepts."""
    sides = {"defaults": lowered.compile()}
    for spec in specs:
        try:
            sides[spec] = lowered.compile(compiler_options=parse_options(spec))
        except Exception as err:  # XLA raises on an unknown option or a refused value
            print(f"[ab] {spec}: not compiled ({str(err).splitlines()[0][:160]})")
    return sides


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("options", nargs="+", help="option sets, each NAME=VALUE[,NAME=VALUE...]")
    p.add_argument("--hidden", default="32x0e")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=15, help="timed calls per side (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    import jax
    import mace  # noqa: F401  (before e3nn)
    import numpy as np
    from _data import data_path

    from jaxtl.convert.convert import from_torch_module

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    jax.config.update("jax_default_matmul_precision", "highest")
    frames = bench.read_structures(str(data_path("mlearn-Si-train")), 5)
    side = bench.JaxTrainer(*from_torch_module(bench.build_torch_model(args.hidden, 10.0)), frames, args.dtype, False)
    call_args = (side.state, side.constants, side.batch, side.lr, side.weights)
    sides = compiled_sides(side.step_fn.lower(*call_args), args.options)
    params = {name: jax.tree.leaves(c(*call_args)[0].params) for name, c in sides.items()}
    wall, cpu = {name: [] for name in sides}, {name: [] for name in sides}
    for r in range(args.warmup + args.repeats):
        for name, compiled in sides.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(compiled(*call_args))
            if r >= args.warmup:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    print(
        f"[ab] {args.hidden} {args.dtype} training step, median of {args.repeats} alternating calls "
        f"(load average {os.getloadavg()[0]:.1f}); speed-ups against XLA's defaults"
    )
    base_wall, base_cpu = statistics.median(wall["defaults"]), statistics.median(cpu["defaults"])
    for name in sides:
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(params[name], params["defaults"]))
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"[ab]   {name}: wall {1e3 * w:.1f} ms (min {1e3 * min(wall[name]):.1f}), process CPU {1e3 * c:.1f} ms; "
            f"speed-up wall {base_wall / w:.3f}, CPU {base_cpu / c:.3f}; max |d params| {diff:.1e}"
        )
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
