"""CPU speed of jaxtl against mace-torch, with the machine's own limits next to it.

One run measures, for MACE-MP-0 small- and medium-shaped models (the factories of
tests/convert/torch_models.py, see bench_energy_forces.py) on a rattled 108-atom Cu fcc
cell, in float32 and float64, energy+forces and energy+forces+stress:

  * jaxtl and mace-torch median times, their calls interleaved (jaxtl, torch, jaxtl, ...)
    so both see the same background load; the ratio torch / jaxtl is the figure to read
    on a shared machine. mace-torch runs in this process, with the glibc tunables the
    script restarts with (jaxtl/_allocator.py), or with `--torch-process own` in a child
    process with the environment the script was started with (benchmarks/_child.py);
  * the load average (1 min) when each row was measured;
  * jaxtl's first call (trace + XLA compile + one run) and XLA's compile alone;
  * the FLOPs and bytes XLA's cost analysis gives for jaxtl's compiled program (counted
    with the edge loop as a single step, since XLA counts a loop body once), the
    roofline time max(FLOPs / matmul peak, bytes / bandwidth) and the fraction of it
    reached;
  * the machine: numpy and jax matmul GFLOP/s (float32, float64) and memory
    bandwidth (numpy copy, jax reduction).

Results: benchmarks/results/speed_cpu.json and .md.

    nice -n 19 python benchmarks/speed.py                          # everything
    nice -n 19 python benchmarks/speed.py --models small --dtypes float32 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ["JAX_PLATFORMS"] = "cpu"
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_energy_forces as bench  # noqa: E402
from _child import ChildSide, load_state, state_arrays  # noqa: E402
from _results import run_metadata, write_results  # noqa: E402

RESULTS = bench.RESULTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="small,medium")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--tasks", default="forces,stress", help="forces: energy+forces; stress: + stress")
    p.add_argument("--repeats", type=int, default=7, help="timed calls per code (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--torch-process", choices=("same", "own"), default="same",
                   help="mace-torch in this process (with jaxtl's glibc tunables) or in a child process "
                        "without them (benchmarks/_child.py)")
    p.add_argument("--out", default=str(RESULTS / "speed_cpu"))
    args = p.parse_args(argv)
    for attr in ("models", "dtypes", "tasks"):
        setattr(args, attr, [x.strip() for x in getattr(args, attr).split(",") if x.strip()])
    return args


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_limits() -> dict:
    """Matmul GFLOP/s and memory bandwidth of this machine, as numpy and jax see them."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    n = 2048
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64"):
        a = rng.normal(size=(n, n)).astype(dt)
        out[f"numpy_matmul_gflops_{dt}"] = 2 * n**3 / _best(lambda: a @ a, 3) / 1e9
        aj = jnp.asarray(a)
        mm = jax.jit(lambda x: x @ x)
        out[f"jax_matmul_gflops_{dt}"] = 2 * n**3 / _best(lambda: mm(aj).block_until_ready(), 3) / 1e9
    big = np.ones(32 * 2**20)  # 256 MB of float64
    dst = np.empty_like(big)
    # a copy reads and writes every byte
    out["numpy_copy_gbs"] = 2 * big.nbytes / _best(lambda: np.copyto(dst, big), 5) / 1e9
    bj = jnp.asarray(big)
    red = jax.jit(jnp.sum)
    out["jax_sum_gbs"] = big.nbytes / _best(lambda: red(bj).block_until_ready(), 5) / 1e9
    return out


class TorchCase(bench.TorchSide):
    def __init__(self, model, atoms, dtype, stress: bool):
        super().__init__(model, atoms, dtype, "cpu")
        self.stress = stress

    def __call__(self):
        from mace.tools import torch_tools

        with torch_tools.default_dtype(self.dtype):
            return self.model(self.batch, training=False, compute_force=True,
                              compute_virials=False, compute_stress=self.stress)


def _torch_case(name, state, atoms, dtype, stress) -> TorchCase:
    """The mace-torch side built in `ChildSide`'s child (`--torch-process own`), same weights."""
    return TorchCase(load_state(bench.build_torch_model(name), state), atoms, dtype, stress)


def _numpy(x):
    """A torch tensor or numpy array as numpy."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _outputs_to_host(out: dict) -> dict:
    return {k: _numpy(out[k]) for k in ("energy", "forces", "stress") if out.get(k) is not None}


class JaxCase(bench.JaxSide):
    def __init__(self, config, variables, atoms, dtype, stress: bool):
        super().__init__(config, variables, atoms, dtype)
        self.stress = stress

    def __call__(self):
        return self.loaded.predict(self.graph, compute_stress=self.stress)

    def compile_seconds(self) -> float:
        """XLA compile alone (a fresh lowering, so the jit cache does not answer)."""
        import jax

        from jaxtl.model import make_predict

        fn = jax.jit(make_predict(self.loaded.module), static_argnums=2)
        lowered = fn.lower(self.loaded.variables, self.graph, self.stress)
        t0 = time.perf_counter()
        lowered.compile()
        return time.perf_counter() - t0

    def cost(self) -> dict:
        """XLA's FLOPs and bytes, the message loops as one step so that nothing is counted once for many."""
        import jax

        from jaxtl.model import make_predict
        from jaxtl.model import tensor_product as tp

        saved = tp.EDGE_CHUNK, tp.NODE_MAJOR_SLOTS
        tp.EDGE_CHUNK = tp.NODE_MAJOR_SLOTS = 1 << 30
        try:
            fn = jax.jit(make_predict(self.loaded.module), static_argnums=2)
            c = fn.lower(self.loaded.variables, self.graph, self.stress).compile()
            cost = c.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            temp = c.memory_analysis().temp_size_in_bytes
        finally:
            tp.EDGE_CHUNK, tp.NODE_MAJOR_SLOTS = saved
        return {"gflop": cost.get("flops", 0.0) / 1e9, "gbytes": cost.get("bytes accessed", 0.0) / 1e9,
                "temp_mb": temp / 1e6}


def run_row(name, dtype, task, torch_model, jax_cv, atoms, machine, args) -> dict:
    import numpy as np

    stress = task == "stress"
    jside = JaxCase(*jax_cv, atoms, dtype, stress)
    if args.torch_process == "own":
        tside = ChildSide(_torch_case, (name, state_arrays(torch_model), atoms, dtype, stress), _outputs_to_host,
                          threads=args.threads)
    else:
        tside = TorchCase(torch_model, atoms, dtype, stress)
    (j_first, t_first), (j_times, t_times) = bench.interleaved([jside, tside], args.repeats, args.warmup)
    load = os.getloadavg()
    j_out, t_out = jside(), _outputs_to_host(tside())  # the child's outputs are on the host already
    if args.torch_process == "own":
        tside.close()
    f_t = t_out["forces"]
    f_j = np.asarray(j_out["forces"])[: len(atoms)]
    j_med, t_med = statistics.median(j_times), statistics.median(t_times)
    cost = jside.cost()
    peak = machine[f"jax_matmul_gflops_{dtype}"]
    bw = machine["numpy_copy_gbs"]
    roofline_s = max(cost["gflop"] / peak, cost["gbytes"] / bw)
    row = {
        "model": name, "dtype": dtype, "task": "energy+forces" + ("+stress" if stress else ""),
        "jaxtl_ms": 1e3 * j_med, "torch_ms": 1e3 * t_med, "torch_over_jaxtl": t_med / j_med,
        "jaxtl_times_ms": [1e3 * t for t in j_times], "torch_times_ms": [1e3 * t for t in t_times],
        "load_avg_1min": load[0],
        "jaxtl_first_call_s": j_first, "jaxtl_compile_s": jside.compile_seconds(),
        "torch_first_call_s": t_first,
        "torch_process": args.torch_process,
        "torch_glibc_tunables": getattr(tside, "glibc_tunables", os.environ.get("GLIBC_TUNABLES", "")),
        "torch_jaxtl_heap_settings": getattr(tside, "jaxtl_heap_settings", True),
        "xla_gflop": cost["gflop"], "xla_gbytes": cost["gbytes"], "xla_temp_mb": cost["temp_mb"],
        "jaxtl_gflops": cost["gflop"] / j_med,
        "roofline_ms": 1e3 * roofline_s, "roofline_fraction": roofline_s / j_med,
        "max_abs_dF": float(np.max(np.abs(f_t - f_j))),
        "abs_dE": abs(float(t_out["energy"].reshape(-1)[0]) - float(np.asarray(j_out["energy"])[0])),
    }
    if stress:
        s_t = t_out["stress"].reshape(3, 3)
        row["max_abs_dstress"] = float(np.max(np.abs(s_t - np.asarray(j_out["stress"])[0])))
    print(f"[speed] {name:6s} {dtype} {row['task']:21s} jaxtl {row['jaxtl_ms']:7.1f} ms | torch "
          f"{row['torch_ms']:7.1f} ms | x{row['torch_over_jaxtl']:5.2f} | load {load[0]:.1f} | first call "
          f"{j_first:.1f} s, compile {row['jaxtl_compile_s']:.1f} s | {cost['gflop']:.2f} GFLOP, "
          f"roofline {row['roofline_fraction']:.0%} | max|dF| {row['max_abs_dF']:.1e}", flush=True)
    return row


def markdown(rows, meta) -> str:
    m = meta["machine"]
    lines = [
        "# CPU speed: jaxtl vs mace-torch",
        "",
        f"{meta['n_atoms']}-atom rattled Cu fcc cell, {meta['n_edges']} edges (r_max 6 A); "
        f"{meta['hardware']}; torch threads {meta['torch_threads']}; median of {meta['repeats']} "
        f"calls after {meta['warmup']} warm-up calls, jaxtl and torch calls alternating"
        + (" (mace-torch in a process of its own with `GLIBC_TUNABLES="
           f"{rows[0].get('torch_glibc_tunables', '') or '(unset)'}`); " if meta.get("torch_process") == "own"
           else " in one process; ")
        + f"jax {meta['versions']['jax']}, torch {meta['versions']['torch']}, mace-torch "
        f"{meta['versions']['mace']}; {meta['date']}.",
        "",
        f"Machine (measured at start, load average {meta['load_avg_at_start']:.1f}): matmul "
        f"numpy {m['numpy_matmul_gflops_float32']:.0f} / jax {m['jax_matmul_gflops_float32']:.0f} GFLOP/s "
        f"float32, numpy {m['numpy_matmul_gflops_float64']:.0f} / jax {m['jax_matmul_gflops_float64']:.0f} "
        f"GFLOP/s float64; memory {m['numpy_copy_gbs']:.0f} GB/s (numpy copy), "
        f"{m['jax_sum_gbs']:.0f} GB/s (jax sum).",
        "",
        "| model | dtype | task | jaxtl ms | mace-torch ms | torch/jaxtl | load avg | jaxtl first call s | "
        "XLA compile s | XLA GFLOP | jaxtl GFLOP/s | roofline ms | of roofline | max abs dF eV/A |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['task']} | {r['jaxtl_ms']:.1f} | {r['torch_ms']:.1f} | "
            f"{r['torch_over_jaxtl']:.2f} | {r['load_avg_1min']:.1f} | {r['jaxtl_first_call_s']:.1f} | "
            f"{r['jaxtl_compile_s']:.1f} | {r['xla_gflop']:.2f} | {r['jaxtl_gflops']:.1f} | "
            f"{r['roofline_ms']:.1f} | {r['roofline_fraction']:.0%} | {r['max_abs_dF']:.1e} |"
        )
    lines += [
        "",
        "Roofline: max(XLA FLOPs / jax matmul peak of the dtype, XLA bytes / copy bandwidth); XLA's "
        "byte count is an upper bound on traffic (it counts every operand of every fusion), so the "
        "fraction is a rough guide. The machine is shared: read the ratios, and the load average "
        "next to each row (2 cores). Above a load of 2, mace-torch's two threads suffer more from "
        "the contention than XLA's (its times for one case spread over a factor 2 to 4), so "
        "ratios measured under load overstate jaxtl's lead over a quiet machine.",
        "",
        f"Command: `{meta['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import mace  # noqa: F401  (before e3nn)
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxtl.convert.convert import from_torch_module

    load0 = os.getloadavg()[0]
    machine = machine_limits()
    print(f"[speed] machine {machine} (load {load0:.1f})", flush=True)
    atoms = bench.copper_cell(3)
    rows, n_edges = [], None
    for name in args.models:
        torch_model = bench.build_torch_model(name)
        jax_cv = from_torch_module(torch_model)
        for dtype in args.dtypes:
            for task in args.tasks:
                rows.append(run_row(name, dtype, task, torch_model, jax_cv, atoms, machine, args))
        if n_edges is None:
            n_edges = bench.TorchSide(torch_model, atoms, "float64", "cpu").n_edges
    meta = {
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "machine": machine,
        "load_avg_at_start": load0,
        "load_avg_at_end": os.getloadavg()[0],
        "n_atoms": len(atoms),
        "n_edges": n_edges,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_threads": threads,
        "torch_process": args.torch_process,
        **run_metadata("speed.py", argv),
    }
    stem = Path(args.out)
    write_results(stem, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl._allocator import restart_with_hugepages

    restart_with_hugepages()  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
