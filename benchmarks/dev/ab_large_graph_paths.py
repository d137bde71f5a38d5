"""A/B in one process of energy+forces speed for the large-graph paths of `jaxtl.model.mace`.

Two sides, timed alternating call by call (benchmarks/_harness.py `interleaved`), on rattled
Cu cells of 4 * cells^3 atoms through the MACE-MP-0-shaped stand-in model:

  * `--against REV`: the working tree against jaxtl as at git revision REV, imported in the
    same process as a copy of its `jaxtl/` renamed `jaxtl_base` (so both sides share the
    process, the load and the allocator);
  * `--against whole`: the working tree with the edge embedding streamed and the product
    basis run inside the message loop (`mace.STREAM_EDGES` = 0 while it is
    traced) against the same code with both off (the threshold out of reach): what the
    switch costs or saves at a size.

Prints one line per cell: medians, ratio, max |force difference|, the load average.

    python benchmarks/dev/ab_large_graph_paths.py --against a64ca8c --cells 3,8 --repeats 20
    python benchmarks/dev/ab_large_graph_paths.py --against whole --cells 8,14 --repeats 5
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _harness as harness  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def import_base(rev: str, into: Path):
    """jaxtl at `rev` as the package `jaxtl_base` (its own imports rewritten), unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "jaxtl"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    package = into / "jaxtl_base"
    (into / "jaxtl").rename(package)
    for path in package.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\bjaxtl(?=[.\s])", "jaxtl_base", text))
    sys.path.insert(0, str(into))
    return importlib.import_module("jaxtl_base.api"), importlib.import_module("jaxtl_base.convert.verify")


class Side:
    """One side's energy+forces call; `cpu` collects the process CPU seconds of each call
    (both sides' threads spin alike; unlike wall time, it does not count the time the
    call waits for cores taken by other processes)."""

    def __init__(self, loaded, graph):
        self.loaded, self.graph = loaded, graph
        self.cpu, self._cpu0 = [], 0.0

    def __call__(self):
        self._cpu0 = time.process_time()
        return self.loaded.predict(self.graph, compute_stress=False)

    def sync(self, out):
        import jax

        out = jax.block_until_ready(out)
        self.cpu.append(time.process_time() - self._cpu0)
        return out


def sides_for(args, config, variables, atoms, base):
    """(new side, other side) with their first outputs computed (traced with their settings)."""
    import jax
    import numpy as np

    from jaxtl.api import build_loaded_model
    from jaxtl.convert.verify import jaxtl_batch
    from jaxtl.model import mace

    dtype = np.dtype(args.dtype)
    graph = jax.device_put(jaxtl_batch([atoms], config.r_max, dtype).graph)
    new = Side(build_loaded_model(config, variables, dtype=args.dtype), graph)
    if base is None:  # the same code, both paths
        other = Side(build_loaded_model(config, variables, dtype=args.dtype), graph)
        with harness.swapped(mace, "STREAM_EDGES", 0):
            first_new = new()
        with harness.swapped(mace, "STREAM_EDGES", 1 << 62):
            first_other = other()
    else:
        base_api, base_verify = base
        base_graph = jax.device_put(base_verify.jaxtl_batch([atoms], config.r_max, dtype).graph)
        other = Side(base_api.build_loaded_model(config, variables, dtype=args.dtype), base_graph)
        first_new, first_other = new(), other()
    diff = float(np.max(np.abs(np.asarray(first_new["forces"]) - np.asarray(first_other["forces"]))))
    return new, other, diff


def same_program(new: Side, other: Side) -> bool:
    """Whether the two sides compile to the same optimised HLO, with what records where in the
    Python source each instruction came from left out (metadata, stack frame ids and their
    tables: the sides' files differ). Only meaningful when neither side's trace depends on a
    setting swapped while tracing (`--against REV`)."""

    def text(side):
        compiled = side.loaded._predict.lower(side.loaded.variables, side.graph, False).compile()
        tables = re.compile(r"\s*\d+ |(FileNames|FunctionNames|FileLocations|StackFrames)\b")
        lines = [line for line in compiled.as_text().splitlines() if not tables.match(line)]
        return re.sub(r", (metadata=\{[^}]*\}|stack_frame_id=\d+)", "", "\n".join(lines))

    return text(new) == text(other)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="medium", choices=("small", "medium"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--cells", default="3,8", help="comma list of cube repeats (3: 108 atoms, 8: 2,048)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--against", required=True, help="a git revision, or `whole` (see above)")
    args = p.parse_args(argv)
    torch_model = harness.build_torch_model(args.model)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.convert.convert import from_torch_module

    config, variables = from_torch_module(torch_model)
    with tempfile.TemporaryDirectory() as tmp:
        base = None if args.against == "whole" else import_base(args.against, Path(tmp))
        other_name = "whole-graph paths" if base is None else f"jaxtl at {args.against}"
        new_name = "streamed + product in loop" if base is None else "working tree"
        for cells in [int(c) for c in args.cells.split(",")]:
            atoms = harness.copper_cell(cells)
            new, other, diff = sides_for(args, config, variables, atoms, base)
            same = "" if base is None else f"; same compiled program: {same_program(new, other)}"
            load_before = os.getloadavg()[0]
            _, (t_new, t_other) = harness.interleaved([new, other], args.repeats, warmup=2)
            m_new, m_other = statistics.median(t_new), statistics.median(t_other)
            c_new, c_other = (statistics.median(side.cpu[-args.repeats :]) for side in (new, other))
            print(
                f"{len(atoms)} atoms, {args.model} {args.dtype}: {new_name} {1e3 * m_new:.1f} ms, {other_name} "
                f"{1e3 * m_other:.1f} ms (medians of {args.repeats} alternating calls), ratio other/new "
                f"{m_other / m_new:.3f}; fastest calls {1e3 * min(t_new):.1f} / {1e3 * min(t_other):.1f} ms "
                f"({min(t_other) / min(t_new):.3f}); process CPU {1e3 * c_new:.1f} / {1e3 * c_other:.1f} ms "
                f"({c_other / c_new:.3f}); max |force difference| {diff:.2e} eV/A; load average "
                f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after{same}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
