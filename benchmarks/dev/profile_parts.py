"""Where one compiled energy+forces call spends its time, by part, against each part's roofline.

The model's call is compiled once; its optimised HLO gives every top-level instruction
(fusion, dot, gather, copy, ...) with its output and operand shapes and the JAX name stack
it came from (`jvp(MACE)/MACE._layers/interactions_1/nkb,nkq->nbq/...`; `transpose(...)`
is the backward pass). `jax.profiler` then records how long XLA:CPU's thunk executor spent
in each instruction over a few calls. Instructions are grouped into parts by block (radial
embedding, interaction i, product i, readouts), direction (forward / backward) and what
they do (radial MLP, slot products w * x, neighbour sums, CG coupling, linear maps,
gathers, symmetric contraction, ...); each part is printed with its measured time, its
bytes (operands + output, an upper bound on traffic, as XLA's cost analysis counts) and
FLOPs (dots only: 2 x output x contracted size), and its roofline time
max(FLOPs / matmul peak, bytes / copy bandwidth) on this machine.

The thunk executor runs independent instructions on both cores at once, so the parts'
times add up to more than the call's wall time; the ratio of time to roofline is what
ranks the parts. `--top N` also lists the N slowest instructions.

With `--against REV` jaxtl at git revision REV is profiled beside the working tree in the
same process (imported as `jaxtl_base`, as benchmarks/dev/ab_large_graph_paths.py does),
the two sides' profiled calls alternating round by round, so that both see the same load.

    python benchmarks/dev/profile_parts.py --model medium --dtype float32 --calls 5
    python benchmarks/dev/profile_parts.py --against HEAD --calls 3 --rounds 4
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import _harness as harness  # noqa: E402

INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = (.+?) (\w[\w-]*)\((.*?)\)(, .*)?$")
SHAPE = re.compile(r"(pred|s8|s16|s32|s64|u8|u32|u64|f16|bf16|f32|f64)\[([\d,]*)\]")
BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8}
BYTES.update({"u64": 8, "f64": 8})
EINSUMS = {
    "nkb,nkq->nbq": "neighbour sum over K slots",
    "nbca,abm->ncm": "CG coupling (nodes)",
    "nui,uw->nwi": "linear maps (nodes)",
    "nui,suw->nswi": "element linear (nodes)",
    "nswi,ns->nwi": "element linear (nodes)",
}


def shapes_bytes(text: str) -> tuple[int, list[list[int]]]:
    """Total bytes and the dims of every array shape written in `text`."""
    total, dims = 0, []
    for dtype, d in SHAPE.findall(text):
        ds = [int(x) for x in d.split(",") if x]
        total += BYTES[dtype] * math.prod(ds)
        dims.append(ds)
    return total, dims


def entry_instructions(hlo: str) -> dict:
    """{name: {"out": bytes, "in": bytes, "dims": out dims, "op": opcode, "stack": op_name, "flops"}}
    for the instructions of the entry computation (the thunks the executor runs)."""
    entry = hlo[hlo.index("\nENTRY ") :]
    entry = entry[: entry.index("\n}\n")]
    shapes = {}
    out = {}
    for line in entry.splitlines()[1:]:
        m = INSTRUCTION.match(line)
        if not m:
            continue
        name, shape, op, operands, rest = m.group(1), m.group(2), m.group(3), m.group(4), m.group(5) or ""
        out_bytes, out_dims = shapes_bytes(shape)
        shapes[name] = (out_bytes, out_dims)
        in_bytes = sum(shapes.get(o, (0, []))[0] for o in re.findall(r"%([\w.\-]+)", operands))
        stack = re.search(r'op_name="([^"]*)"', rest)
        flops = 0
        if op == "dot":
            contract = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
            lhs = shapes.get(re.findall(r"%([\w.\-]+)", operands)[0], (0, [[1]]))[1]
            k = math.prod(lhs[0][int(i)] for i in contract.group(1).split(",") if i) if contract and lhs else 1
            flops = 2 * math.prod(out_dims[0]) * k if out_dims else 0
        out[name] = {
            "out": out_bytes,
            "in": in_bytes,
            "dims": out_dims[0] if out_dims else [],
            "op": op,
            "stack": stack.group(1) if stack else "",
            "flops": flops,
        }
    return out


def part_of(ins: dict, n_slots: int, n_edges: int) -> tuple[str, str, str]:
    """(block, direction, what) of one instruction."""
    stack = ins["stack"]
    direction = "backward" if "transpose(" in stack else "forward"
    block = re.search(r"(interactions_\d|products_\d|readouts_\d|radial_embedding|node_embedding)", stack)
    block = block.group(1) if block else "graph/other"
    rows = ins["dims"][0] if ins["dims"] else 0
    rows = math.prod(ins["dims"][:2]) if len(ins["dims"]) >= 2 and rows * ins["dims"][1] == n_slots else rows
    scale = "slots" if rows == n_slots else "edges" if 0 < rows <= n_edges and rows >= n_edges // 2 else "nodes"
    for key, what in EINSUMS.items():
        if key in stack:
            return block, direction, what
    if "symmetric_contraction" in stack:
        what = "symmetric contraction"
    elif "conv_tp_weights" in stack or "silu" in stack:
        what = "radial MLP"
    elif ins["op"] in ("dot", "convolution"):
        what = f"other dots ({scale})"
    elif ins["op"] in ("copy", "transpose") or ins["op"] == "fusion" and "copy" in ins.get("name", ""):
        what = f"copies/transposes ({scale})"
    elif "gather" in stack or "_take" in stack or "scatter" in stack:
        what = f"gathers/scatters ({scale})"
    else:
        what = f"elementwise ({scale})"
    return block, direction, what


def thunk_times(trace_dir: str, names: set) -> dict:
    """Seconds per call name -> summed duration of its thunk events (all calls)."""
    path = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    data = json.load(gzip.open(path))
    events = data["traceEvents"] if isinstance(data, dict) else data
    times = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            times[e["name"]] += e.get("dur", 0) * 1e-6
    return times


class Profiled:
    """One side: a compiled energy+forces call, its instructions, and their thunk seconds so far."""

    def __init__(self, loaded, graph, n_edges: int):
        self.loaded, self.graph = loaded, graph
        compiled = loaded._predict.lower(loaded.variables, graph, False).compile()
        self.instructions = entry_instructions(compiled.as_text())
        for name, ins in self.instructions.items():
            ins["name"] = name
        self.n_slots = int(graph.neighbours.size) if graph.neighbours is not None else -1
        self.n_edges = n_edges
        self.times = collections.Counter()
        self.calls = 0

    def call(self):
        import jax

        return jax.block_until_ready(self.loaded.predict(self.graph, compute_stress=False))

    def profile(self, calls: int):
        import jax

        with tempfile.TemporaryDirectory() as tmp:
            jax.profiler.start_trace(tmp, create_perfetto_trace=True)
            for _ in range(calls):
                self.call()
            jax.profiler.stop_trace()
            self.times.update(thunk_times(tmp, set(self.instructions)))
        self.calls += calls

    def parts(self) -> dict:
        parts = collections.defaultdict(lambda: {"s": 0.0, "bytes": 0, "flops": 0, "n": 0})
        for name, ins in self.instructions.items():
            part = parts[part_of(ins, self.n_slots, self.n_edges)]
            part["s"] += self.times.get(name, 0.0) / self.calls
            part["bytes"] += ins["in"] + ins["out"]
            part["flops"] += ins["flops"]
            part["n"] += 1
        return parts


def sides(args, config, variables, atoms, tmp: Path) -> list[Profiled]:
    """[working tree] or, with --against REV, [working tree, jaxtl at REV]."""
    import jax
    import numpy as np

    from jaxtl.api import build_loaded_model
    from jaxtl.convert.verify import jaxtl_batch

    dtype = np.dtype(args.dtype)
    batch = jaxtl_batch([atoms], config.r_max, dtype)
    out = [Profiled(build_loaded_model(config, variables, dtype=args.dtype), jax.device_put(batch.graph), 0)]
    if args.against:
        from ab_large_graph_paths import import_base

        base_api, base_verify = import_base(args.against, tmp)
        graph = jax.device_put(base_verify.jaxtl_batch([atoms], config.r_max, dtype).graph)
        out.append(Profiled(base_api.build_loaded_model(config, variables, dtype=args.dtype), graph, 0))
    for side in out:
        side.n_edges = int(side.graph.senders.shape[0])
    return out


def print_table(profiled: list[Profiled], names: list[str], peak: float, bandwidth: float) -> None:
    parts = [side.parts() for side in profiled]
    keys = sorted(set().union(*parts), key=lambda k: -max(p[k]["s"] if k in p else 0.0 for p in parts))
    totals = [sum(p["s"] for p in side.values()) for side in parts]
    head = " | ".join(f"{n} ms" for n in names)
    print(f"| block | direction | part | instr | {head} | % | MB | GFLOP | roofline ms | time / roofline |")
    print("|---|---|---|---:|" + "---:|" * len(names) + "---:|---:|---:|---:|---:|")
    for key in keys:
        p = parts[0].get(key) or parts[-1][key]
        if max(side.get(key, {"s": 0.0})["s"] for side in parts) < 0.002 * totals[0]:
            continue
        roof = max(p["flops"] / peak, p["bytes"] / bandwidth)
        ms = " | ".join(f"{1e3 * side[key]['s']:.2f}" if key in side else "-" for side in parts)
        print(
            f"| {key[0]} | {key[1]} | {key[2]} | {p['n']} | {ms} | {100 * p['s'] / totals[0]:.1f} "
            f"| {p['bytes'] / 1e6:.1f} | {p['flops'] / 1e9:.3f} | {1e3 * roof:.2f} | "
            f"{p['s'] / roof if roof else float('inf'):.1f} |"
        )
    print("| all | | | | " + " | ".join(f"{1e3 * t:.1f}" for t in totals) + " | 100 | | | | |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="medium", choices=("small", "medium"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--cells", type=int, default=3, help="cube repeats of the Cu cell (3: 108 atoms)")
    p.add_argument("--calls", type=int, default=5, help="profiled calls per round (after 3 untimed)")
    p.add_argument("--rounds", type=int, default=1, help="rounds, the sides alternating round by round")
    p.add_argument("--against", help="also profile jaxtl at this git revision (see ab_large_graph_paths.py)")
    p.add_argument("--top", type=int, default=15, help="also list the working tree's N slowest instructions")
    args = p.parse_args(argv)
    torch_model = harness.build_torch_model(args.model)
    import jax

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    from jaxtl.convert.convert import from_torch_module

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed import machine_limits

    config, variables = from_torch_module(torch_model)
    atoms = harness.copper_cell(args.cells)
    limits = machine_limits("cpu")
    peak, bandwidth = limits[f"jax_matmul_gflops_{args.dtype}"] * 1e9, limits["bandwidth_gbs"] * 1e9
    with tempfile.TemporaryDirectory() as tmp:
        profiled = sides(args, config, variables, atoms, Path(tmp))
        for side in profiled:
            for _ in range(3):
                side.call()
        load = os.getloadavg()[0]
        for _ in range(args.rounds):
            for side in profiled:
                side.profile(args.calls)
    names = ["working tree"] + ([f"at {args.against}"] if args.against else [])
    new = profiled[0]
    print(
        f"{args.model} {args.dtype}, {len(new.graph.positions)} padded nodes, {new.n_slots} slots, {new.n_edges} "
        f"padded edges; {args.rounds} x {args.calls} profiled calls a side; load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; matmul peak {peak / 1e9:.0f} GFLOP/s, copy bandwidth "
        f"{bandwidth / 1e9:.1f} GB/s (measured at the start); the roofline columns are the working tree's"
    )
    print_table(profiled, names, peak, bandwidth)
    print(f"\nslowest {args.top} instructions of the working tree:")
    for name in sorted(new.times, key=lambda n: -new.times[n])[: args.top]:
        ins = new.instructions[name]
        print(
            f"  {1e3 * new.times[name] / new.calls:7.2f} ms  {name}  {ins['op']} {ins['dims']}  "
            f"{(ins['in'] + ins['out']) / 1e6:.1f} MB  {ins['stack'][:110]}"
        )
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
