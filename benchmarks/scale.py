"""Energy+forces from 10^3 to 10^5 atoms: time and memory per atom, neighbour list included.

Rattled Cu fcc cubes (a = 3.61 A, rattle 0.05 A) of about 1k, 10k and 100k atoms,
periodic, through the MACE-MP-0-shaped stand-in model of the other benchmarks
(`--model medium`: 89 elements, 128x0e+128x1o, max_ell 3, correlation 3, r_max 6 A; its
weights are random, the cost is the real model's). Each size runs in its own process so
that its peak memory is its own: on the CPU the peak resident set (ru_maxrss), on a GPU
XLA's peak bytes in use. Timed, per call (median of `--repeats` after one warm-up):

  * `neighbours`: vesin's neighbour list and the padded graph on the host;
  * `model`: the jit-compiled energy+forces on the device (graph already there);
  * `total`: both, plus the transfer, as an MD step or an ASE calculator call pays.

With `--torch`, mace-torch's energy+forces on the same cell and device, for the ratio
at each size (`mace.data` builds its graph with matscipy; that time is not counted).

    python benchmarks/scale.py                                 # CPU: 1k, 10k atoms
    python benchmarks/scale.py --sizes 1000,10000,100000 --device gpu --torch

Writes benchmarks/results/scale_<device>.json and .md (or --out STEM).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402
from _harness import RESULTS, run_metadata, write_results  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="medium", choices=("small", "medium"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--sizes", default="1000,10000", help="comma list of approximate atom counts")
    p.add_argument("--repeats", type=int, default=3, help="timed calls after one; 0: one call, compiled ahead")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--backend", default="xla", choices=("xla", "cueq"), help="jaxtl backend (cueq: cuEquivariance)")
    p.add_argument("--torch", action="store_true", help="also time mace-torch (up to --torch-max-atoms)")
    p.add_argument(
        "--torch-max-atoms",
        type=int,
        default=20000,
        help="largest cell given to mace-torch: it keeps every per-edge tensor (default 20000)",
    )
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/scale_<device>)")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: one size, JSON on stdout
    return p.parse_args(argv)


def cube_cells(n_atoms: int) -> int:
    """Repeats of the 4-atom fcc cube closest to `n_atoms` atoms."""
    return max(1, round((n_atoms / 4) ** (1 / 3)))


def peak_memory_bytes(device: str) -> int | None:
    if device == "gpu":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("peak_bytes_in_use")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def one_size(args) -> dict:
    """Time and measure one cell in this process (run as a child of `main`)."""
    args.device = harness.resolve_device(args.device)  # before jax is imported
    torch_model = harness.build_torch_model(args.model)
    import jax
    import numpy as np

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_default_matmul_precision", "highest")
    from jaxtl.api import build_loaded_model
    from jaxtl.convert.convert import from_torch_module
    from jaxtl.convert.verify import jaxtl_batch

    config, variables = from_torch_module(torch_model)
    loaded = build_loaded_model(config, variables, dtype=args.dtype, backend=args.backend)
    atoms = harness.copper_cell(cube_cells(args.one))

    def host_graph():
        return jaxtl_batch([atoms], config.r_max, np.dtype(args.dtype)).graph

    t0 = time.perf_counter()
    graph = host_graph()
    first_nl = time.perf_counter() - t0
    n_edges = int(np.asarray(graph.node_mask)[np.asarray(graph.receivers)].sum())  # padding edges end on padding
    dev_graph = jax.device_put(graph)
    if args.repeats == 0:
        return single_call(loaded, graph, dev_graph, n_edges, len(atoms), first_nl, args.device)
    t0 = time.perf_counter()
    jax.block_until_ready(loaded.predict(dev_graph, compute_stress=False))
    first_call = time.perf_counter() - t0

    nl, model, total = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        g = host_graph()
        t1 = time.perf_counter()
        jax.block_until_ready(loaded.predict(dev_graph, compute_stress=False))
        t2 = time.perf_counter()
        jax.block_until_ready(loaded.predict(jax.device_put(g), compute_stress=False))
        t3 = time.perf_counter()
        nl.append(t1 - t0)
        model.append(t2 - t1)
        total.append(t1 - t0 + t3 - t2)
    row = {
        "n_atoms": len(atoms),
        "n_edges": n_edges,
        "padded_nodes": int(graph.positions.shape[0]),
        "padded_edges": int(graph.senders.shape[0]),
        "neighbours_ms": 1e3 * statistics.median(nl),
        "model_ms": 1e3 * statistics.median(model),
        "total_ms": 1e3 * statistics.median(total),
        "first_call_s": first_call,
        "first_neighbours_s": first_nl,
        "peak_memory_bytes": peak_memory_bytes(args.device),
    }
    if args.torch:
        try:
            side = harness.TorchSide(torch_model, atoms, args.dtype, args.device)
            side.sync(side())
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                side.sync(side())
                times.append(time.perf_counter() - t0)
            row["torch_model_ms"] = 1e3 * statistics.median(times)
        except RuntimeError as err:  # mace-torch out of memory: keep jaxtl's row
            row["torch_error"] = str(err).splitlines()[0][:120]
    return row


def single_call(loaded, graph, dev_graph, n_edges: int, n_atoms: int, neighbours_s: float, device: str) -> dict:
    """`--repeats 0`: compiled ahead of time, then one call (for cells where every call is minutes);
    the row's model time is that call alone, its total the call and the first neighbour list."""
    import jax

    t0 = time.perf_counter()
    compiled = loaded._predict.lower(loaded.variables, dev_graph, False).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(loaded.variables, dev_graph))
    call_s = time.perf_counter() - t0
    return {
        "n_atoms": n_atoms,
        "n_edges": n_edges,
        "padded_nodes": int(graph.positions.shape[0]),
        "padded_edges": int(graph.senders.shape[0]),
        "neighbours_ms": 1e3 * neighbours_s,
        "model_ms": 1e3 * call_s,
        "total_ms": 1e3 * (neighbours_s + call_s),
        "compile_s": compile_s,
        "first_call_s": compile_s + call_s,
        "first_neighbours_s": neighbours_s,
        "peak_memory_bytes": peak_memory_bytes(device),
    }


def markdown(rows, meta) -> str:
    calls = f"median of {meta['repeats']} calls after one"
    if meta["repeats"] == 0:
        calls = "one call, compiled ahead (first call s = compile + that call; neighbours: the first list)"
    lines = [
        f"# Energy+forces at scale ({meta['device']})",
        "",
        f"{meta['model']} model, {meta['dtype']}, jaxtl backend {meta.get('backend', 'xla')}; rattled Cu fcc cubes, "
        f"periodic; {calls}; {meta['hardware']}; {meta.get('versions', '')}; "
        f"{meta.get('date', '')}.",
        "",
        "| atoms | edges | neighbours ms | model ms | total ms | model us/atom | total us/atom | peak MB | "
        "peak kB/atom | first call s | mace-torch ms | torch/jaxtl |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['n_atoms_requested']} | | | | | | | | | | | failed: {r['error']} |")
            continue
        mem = r["peak_memory_bytes"] or 0
        torch_ms = r.get("torch_model_ms")
        torch_cells = ("", "") if torch_ms is None else (f"{torch_ms:.1f}", f"{torch_ms / r['model_ms']:.2f}")
        if "torch_error" in r:
            torch_cells = (f"failed: {r['torch_error']}", "")
        lines.append(
            f"| {r['n_atoms']} | {r['n_edges']} | {r['neighbours_ms']:.1f} | {r['model_ms']:.1f} | "
            f"{r['total_ms']:.1f} | {1e3 * r['model_ms'] / r['n_atoms']:.2f} | "
            f"{1e3 * r['total_ms'] / r['n_atoms']:.2f} | {mem / 1e6:.0f} | {mem / 1e3 / r['n_atoms']:.1f} | "
            f"{r['first_call_s']:.1f} | {torch_cells[0]} | {torch_cells[1]} |"
        )
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        print("ROW " + json.dumps(one_size(args)), flush=True)
        return 0
    import platform

    rows = []
    for n in [int(s) for s in args.sizes.split(",") if s.strip()]:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            str(n),
            "--model",
            args.model,
            "--dtype",
            args.dtype,
            "--repeats",
            str(args.repeats),
            "--device",
            args.device,
            "--backend",
            args.backend,
        ]
        cmd += ["--torch"] if args.torch and n <= args.torch_max_atoms else []
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        found = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
        if proc.returncode or not found:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            rows.append({"n_atoms_requested": n, "error": f"exit {proc.returncode}: {tail[0][:200]}"})
        else:
            rows.append(json.loads(found[0]))
        print(f"[scale] {n} atoms: {rows[-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    meta = {
        "device": args.device,
        "model": args.model,
        "dtype": args.dtype,
        "backend": args.backend,
        "repeats": args.repeats,
        "hardware": f"{platform.machine()}, {os.cpu_count()} cores",
        **run_metadata("scale.py", argv),
    }
    stem = Path(args.out) if args.out else RESULTS / f"scale_{args.device}"
    write_results(stem, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
