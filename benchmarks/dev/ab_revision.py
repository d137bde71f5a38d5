"""A/B of one jaxtl function against its version at a git revision, in one process.

Timings on a shared 2-core machine move by 15-50 % between runs, far more than most
changes to the model; comparing two separate benchmark runs then says little. This script
loads `--module` as it is at `--base` (from `git show`), builds the same case twice, once
with `--function` taken from the base module and once from the working tree, and times the
two compiled functions in strict alternation, so both see the same machine state. It also
prints the largest difference between the two outputs, and XLA's instruction count of
each compiled program.

Cases (`--case`):
  * `forces`: energy+forces of the MP-0-shaped model `--model` on the rattled Cu cell of
    benchmarks/_harness.py (108 atoms; `--cells 14`: 10,976);
  * `train`: the training step of `bench_train_step.py` (5 Si cells, AMSGrad) for the
    hidden irreps `--hidden`.

    python benchmarks/dev/ab_revision.py --base 3920622~1 --case forces --model medium --dtype float32
    python benchmarks/dev/ab_revision.py --base 3920622~1 --case train --hidden 64x0e+64x1o --dtype float64

`--without FIELD` compares instead the working tree with itself, the 'old' side given a
graph whose optional field FIELD is None (e.g. `--without edge_pairs`: the radial MLP
once per edge instead of once per pair of opposite edges).

Each side's median wall time and median process CPU time per call are printed; on a
machine shared with other processes the CPU time (both cores' work for this process) moves
far less with the load than the wall time does.

The function is looked up by name in the module at the moment the model is traced, so it
must be called as `module.function` (or from inside that module) for the swap to take.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import _harness as harness  # noqa: E402
import bench_train_step  # noqa: E402

ROOT = harness.ROOT


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", help="git revision of the 'old' side, e.g. HEAD~1")
    p.add_argument("--without", help="'old' side: the working tree with this optional Graph field set to None")
    p.add_argument("--module", default="jaxtl.model.tensor_product")
    p.add_argument("--function", default="node_major_messages")
    p.add_argument("--case", choices=("forces", "train"), default="forces")
    p.add_argument("--model", choices=("small", "medium"), default="medium", help="forces case")
    p.add_argument(
        "--cells", type=int, default=3, help="forces case: conventional fcc cells per side (3: 108 atoms, 14: 10,976)"
    )
    p.add_argument("--hidden", default="64x0e+64x1o", help="train case: hidden irreps")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=11, help="timed calls per side (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    return p.parse_args(argv)


def module_at(revision: str, module: str):
    """`module` (dotted name) as its source file is at `revision`, imported under a new name."""
    rel = Path(*module.split(".")).with_suffix(".py")
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:{rel.as_posix()}"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="jaxtl_ab_")) / rel.name
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{module}_at_{revision}".replace(".", "_"), path)
    old = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = old  # dataclasses (flax modules) look their module up there
    spec.loader.exec_module(old)
    return old


def forces_case(args, without=None):
    """(call, forces, XLA entry instructions) of energy+forces, traced and compiled now;
    without: a Graph field to set to None."""
    import jax

    from jaxtl.convert.convert import from_torch_module

    config, variables = from_torch_module(harness.build_torch_model(args.model))
    side = harness.JaxSide(config, variables, harness.copper_cell(args.cells), args.dtype)
    graph = side.graph._replace(**{without: None}) if without else side.graph
    call_args = (side.loaded.variables, graph, False)
    out = jax.block_until_ready(side.loaded._predict(*call_args))
    count = instructions(side.loaded._predict.lower(*call_args).compile())
    return (lambda: jax.block_until_ready(side.loaded._predict(*call_args))), out["forces"], count


def train_case(args, without=None):
    """(call, first loss, XLA entry instructions) of the training step, traced and compiled now;
    without: a Graph field to set to None."""
    import jax
    from _data import data_path

    from jaxtl.convert.convert import from_torch_module

    b = bench_train_step
    frames = b.read_structures(str(data_path("mlearn-Si-train")), 5)
    side = b.JaxTrainer(*from_torch_module(b.build_torch_model(args.hidden, 10.0)), frames, args.dtype, False)
    if without:
        side.batch = side.batch._replace(graph=side.batch.graph._replace(**{without: None}))
    count = instructions(side.step_fn.lower(side.state, side.constants, side.batch, side.lr, side.weights).compile())
    loss = side()
    return (lambda: jax.block_until_ready(side())), jax.numpy.asarray(loss), count


def instructions(compiled) -> int:
    text = compiled.as_text()
    entry = text[text.index("ENTRY") :]
    return sum(1 for line in entry.splitlines() if " = " in line)


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import mace  # noqa: F401  (before e3nn, see the README)
    import numpy as np

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    jax.config.update("jax_default_matmul_precision", "highest")
    build = forces_case if args.case == "forces" else train_case
    sides = {}
    if args.without:
        sides[f"no {args.without}"] = build(args, without=args.without)
        sides["working tree"] = build(args)
    elif not args.base:
        raise SystemExit("give --base REVISION or --without FIELD")
    else:
        target = importlib.import_module(args.module)
        current = getattr(target, args.function)
        old = getattr(module_at(args.base, args.module), args.function)
        # each side is traced and compiled while its version of the function is in place
        for name, impl in ((args.base, old), ("working tree", current)):
            setattr(target, args.function, impl)
            try:
                sides[name] = build(args)
            finally:
                setattr(target, args.function, current)
    (_, out_a, _), (_, out_b, _) = sides.values()
    diff = float(np.max(np.abs(np.asarray(out_a) - np.asarray(out_b))))
    times = {name: [] for name in sides}
    cpu = {name: [] for name in sides}
    for r in range(args.warmup + args.repeats):
        for name, (call, _, _) in sides.items():
            t0, c0 = time.perf_counter(), time.process_time()
            call()
            if r >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    if args.case == "forces":
        what = f"{args.model} energy+forces ({4 * args.cells**3} atoms)"
    else:
        what = f"{args.hidden} training step"
    change = f"Graph.{args.without}" if args.without else f"{args.module}.{args.function}"
    print(
        f"[ab] {what}, {args.dtype}: {change}, median of {args.repeats} alternating calls "
        f"(load average {os.getloadavg()[0]:.1f})"
    )
    for name, (_, _, count) in sides.items():
        t, c = times[name], cpu[name]
        print(
            f"[ab]   {name:14s} {1e3 * statistics.median(t):8.1f} ms (min {1e3 * min(t):.1f}), process CPU "
            f"{1e3 * statistics.median(c):.1f} ms (min {1e3 * min(c):.1f}), {count} XLA entry instructions"
        )
    (name_a, cpu_a), (name_b, cpu_b) = cpu.items()
    print(
        f"[ab]   {name_a} / {name_b}: wall {statistics.median(times[name_a]) / statistics.median(times[name_b]):.3f}, "
        f"process CPU {statistics.median(cpu_a) / statistics.median(cpu_b):.3f}"
    )
    print(f"[ab]   largest |difference| of the {'forces' if args.case == 'forces' else 'first loss'}: {diff:.1e}")
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)
    sys.exit(main())
