"""Energy + forces (+ stress) of jaxtl against mace-torch: same weights, same cell, calls alternating.

Models: MACE-MP-0 small-shaped (89 elements, 128x0e) and medium-shaped (128x0e+128x1o),
both correlation 3, r_max 6 A, 10 Bessel functions, radial MLP [64, 64, 64], max_ell 3
(benchmarks/_harness.py: the factories of tests/convert/torch_models.py, randomly
initialised and perturbed; the cost is the real models'). Structure: a rattled Cu fcc cell
(`--cells 3`: 108 atoms, 8424 edges within 6 A).

One row per (model, dtype, task, jaxtl backend):

  * jaxtl and mace-torch median times, their calls interleaved (jaxtl, torch, jaxtl, ...)
    so both see the same background load; the ratio torch / jaxtl is the figure to read
    on a shared machine. mace-torch runs in this process (`--torch-process same`: with the
    glibc tunables the script restarts with, jaxtl/_allocator.py) or in a child process
    with the environment the script was started with (`own`: each code as it ships,
    benchmarks/_child.py). torch: `model(batch, compute_force=True)` as mace's calculator
    runs it (eval mode, the batch built once by mace's own data pipeline); jaxtl: the
    jit-compiled `predict` on a device-resident padded graph;
  * the load average (1 min) when each row was measured;
  * jaxtl's first call (trace + XLA compile + one run) and XLA's compile alone;
  * the FLOPs and bytes XLA's cost analysis gives for jaxtl's compiled program (counted
    with the message loops as a single step, since XLA counts a loop body once), the
    roofline time max(FLOPs / matmul peak, bytes / bandwidth) and the fraction of it
    reached; the machine's own limits are measured at the start (jax and numpy matmul
    GFLOP/s, memory bandwidth);
  * largest |dF| and |dE| (and |d stress|) between the two codes, from the same run.

`--device gpu` runs both codes on a CUDA GPU when torch and jax both see one (otherwise it
says why and uses the CPU); `--backends xla,cueq` times jaxtl's default and
cuEquivariance backends side by side against the same mace-torch calls.

Results: benchmarks/results/speed_<device>.json and .md (or `--out STEM`).

    nice -n 19 python benchmarks/speed.py                          # CPU, everything
    nice -n 19 python benchmarks/speed.py --models small --dtypes float32 --repeats 5
    python benchmarks/speed.py --device gpu --tasks forces --backends xla,cueq --repeats 10
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402
from _child import ChildSide, load_state, state_arrays  # noqa: E402

TASKS = ("forces", "stress")
BACKENDS = ("xla", "cueq")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="small,medium", help="comma list of: small, medium")
    p.add_argument("--dtypes", default="float32,float64", help="comma list of: float32, float64")
    p.add_argument("--tasks", default="forces,stress", help="forces: energy+forces; stress: + stress")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--backends", default="xla", help="comma list of jaxtl backends, timed side by side: xla, cueq (cuEquivariance)"
    )
    p.add_argument("--cells", type=int, default=3, help="conventional fcc cells per side (3: 108 atoms)")
    p.add_argument(
        "--matmul-precision",
        default="highest",
        choices=("default", "high", "highest"),
        help="jax float32 matmul precision ('highest' = full float32, as torch computes)",
    )
    p.add_argument("--repeats", type=int, default=7, help="timed calls per code (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--torch-process",
        choices=("same", "own"),
        default="same",
        help="mace-torch in this process (with jaxtl's glibc tunables) or in a child process "
        "without them (benchmarks/_child.py)",
    )
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/speed_<device>)")
    args = p.parse_args(argv)
    for attr in ("models", "dtypes", "tasks", "backends"):
        setattr(args, attr, [x.strip() for x in getattr(args, attr).split(",") if x.strip()])
    bad = (
        [m for m in args.models if m not in harness.MODELS]
        + [d for d in args.dtypes if d not in harness.DTYPES]
        + [t for t in args.tasks if t not in TASKS]
        + [b for b in args.backends if b not in BACKENDS]
    )
    if bad:
        p.error(
            f"unknown {bad}; models: {sorted(harness.MODELS)}, dtypes: {list(harness.DTYPES)}, "
            f"tasks: {list(TASKS)}, backends: {list(BACKENDS)}"
        )
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def machine_limits(device: str) -> dict:
    """Matmul GFLOP/s and memory bandwidth of this machine, as numpy (host) and jax (device) see them.

    `bandwidth_gbs`, the roofline's, is the host's copy bandwidth on the CPU and jax's
    reduction bandwidth on a GPU."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    out = {}
    n = 2048
    rng = np.random.default_rng(0)
    for dt in ("float32", "float64"):
        a = rng.normal(size=(n, n)).astype(dt)
        out[f"numpy_matmul_gflops_{dt}"] = 2 * n**3 / _best(lambda a=a: a @ a, 3) / 1e9
        aj, mm = jnp.asarray(a), jax.jit(lambda x: x @ x)
        out[f"jax_matmul_gflops_{dt}"] = 2 * n**3 / _best(lambda mm=mm, aj=aj: mm(aj).block_until_ready(), 3) / 1e9
    big = np.ones(32 * 2**20)  # 256 MB of float64
    dst = np.empty_like(big)
    # a copy reads and writes every byte
    out["numpy_copy_gbs"] = 2 * big.nbytes / _best(lambda: np.copyto(dst, big), 5) / 1e9
    bj = jnp.asarray(big)
    red = jax.jit(jnp.sum)
    out["jax_sum_gbs"] = big.nbytes / _best(lambda: red(bj).block_until_ready(), 5) / 1e9
    out["bandwidth_gbs"] = out["numpy_copy_gbs"] if device == "cpu" else out["jax_sum_gbs"]
    return out


class TorchCase(harness.TorchSide):
    def __init__(self, model, atoms, dtype, stress: bool, device: str = "cpu"):
        super().__init__(model, atoms, dtype, device)
        self.stress = stress

    def __call__(self):
        from mace.tools import torch_tools

        with torch_tools.default_dtype(self.dtype):
            return self.model(
                self.batch, training=False, compute_force=True, compute_virials=False, compute_stress=self.stress
            )


def _torch_case(name, state, atoms, dtype, stress, device) -> TorchCase:
    """The mace-torch side built in `ChildSide`'s child (`--torch-process own`), same weights."""
    return TorchCase(load_state(harness.build_torch_model(name), state), atoms, dtype, stress, device)


def _numpy(x):
    """A torch tensor or numpy array as numpy."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def _outputs_to_host(out: dict) -> dict:
    return {k: _numpy(out[k]) for k in ("energy", "forces", "stress") if out.get(k) is not None}


class JaxCase(harness.JaxSide):
    def __init__(self, config, variables, atoms, dtype, stress: bool, backend: str = "xla"):
        super().__init__(config, variables, atoms, dtype, backend)
        self.backend = backend
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
        return {
            "gflop": cost.get("flops", 0.0) / 1e9,
            "gbytes": cost.get("bytes accessed", 0.0) / 1e9,
            "temp_mb": temp / 1e6,
        }


def run_rows(name, dtype, task, torch_model, jax_cv, atoms, machine, args, device) -> list[dict]:
    """One row per jaxtl backend; every backend and mace-torch alternate in one loop."""
    import numpy as np

    stress = task == "stress"
    jsides = [JaxCase(*jax_cv, atoms, dtype, stress, backend) for backend in args.backends]
    if args.torch_process == "own":
        tside = ChildSide(
            _torch_case,
            (name, state_arrays(torch_model), atoms, dtype, stress, device),
            _outputs_to_host,
            threads=args.threads,
        )
    else:
        tside = TorchCase(torch_model, atoms, dtype, stress, device)
    firsts, times = harness.interleaved([*jsides, tside], args.repeats, args.warmup)
    load = os.getloadavg()
    t_out = _outputs_to_host(tside())  # the child's outputs are on the host already
    if args.torch_process == "own":
        tside.close()
    t_first, t_med = firsts[-1], statistics.median(times[-1])
    rows = []
    for jside, j_first, j_times in zip(jsides, firsts, times):
        j_out = jside()
        f_j = np.asarray(j_out["forces"])[: len(atoms)]
        j_med = statistics.median(j_times)
        cost = jside.cost()
        roofline_s = max(
            cost["gflop"] / machine[f"jax_matmul_gflops_{dtype}"], cost["gbytes"] / machine["bandwidth_gbs"]
        )
        row = {
            "model": name,
            "dtype": dtype,
            "task": "energy+forces" + ("+stress" if stress else ""),
            "backend": jside.backend,
            "device": device,
            "jaxtl_ms": 1e3 * j_med,
            "torch_ms": 1e3 * t_med,
            "torch_over_jaxtl": t_med / j_med,
            "jaxtl_times_ms": [1e3 * t for t in j_times],
            "torch_times_ms": [1e3 * t for t in times[-1]],
            "load_avg_1min": load[0],
            "jaxtl_first_call_s": j_first,
            "jaxtl_compile_s": jside.compile_seconds(),
            "torch_first_call_s": t_first,
            "torch_process": args.torch_process,
            "torch_glibc_tunables": getattr(tside, "glibc_tunables", os.environ.get("GLIBC_TUNABLES", "")),
            "torch_jaxtl_heap_settings": getattr(tside, "jaxtl_heap_settings", True),
            "padded_nodes": jside.n_nodes_padded,
            "padded_edges": jside.n_edges_padded,
            "xla_gflop": cost["gflop"],
            "xla_gbytes": cost["gbytes"],
            "xla_temp_mb": cost["temp_mb"],
            "jaxtl_gflops": cost["gflop"] / j_med,
            "roofline_ms": 1e3 * roofline_s,
            "roofline_fraction": roofline_s / j_med,
            "max_abs_dF": float(np.max(np.abs(t_out["forces"] - f_j))),
            "abs_dE": abs(float(t_out["energy"].reshape(-1)[0]) - float(np.asarray(j_out["energy"])[0])),
        }
        if stress:
            s_t = t_out["stress"].reshape(3, 3)
            row["max_abs_dstress"] = float(np.max(np.abs(s_t - np.asarray(j_out["stress"])[0])))
        print(
            f"[speed] {name:6s} {dtype} {row['task']:21s} {jside.backend:4s} jaxtl {row['jaxtl_ms']:7.1f} ms | "
            f"torch {row['torch_ms']:7.1f} ms | x{row['torch_over_jaxtl']:5.2f} | load {load[0]:.1f} | first call "
            f"{j_first:.1f} s, compile {row['jaxtl_compile_s']:.1f} s | {cost['gflop']:.2f} GFLOP, "
            f"roofline {row['roofline_fraction']:.0%} | max|dF| {row['max_abs_dF']:.1e}",
            flush=True,
        )
        rows.append(row)
    return rows


def markdown(rows, meta) -> str:
    m = meta["machine"]
    lines = [
        f"# Energy + forces: jaxtl vs mace-torch ({meta['device']})",
        "",
        f"{meta['n_atoms']}-atom rattled Cu fcc cell, {meta['n_edges']} edges (r_max 6 A); "
        f"{meta['hardware']}; torch threads {meta['torch_threads']}; median of {meta['repeats']} "
        f"calls after {meta['warmup']} warm-up calls, jaxtl and torch calls alternating"
        + (
            " (mace-torch in a process of its own with `GLIBC_TUNABLES="
            f"{rows[0].get('torch_glibc_tunables', '') or '(unset)'}`); "
            if meta.get("torch_process") == "own"
            else " in one process; "
        )
        + f"jax {meta['versions']['jax']}, torch {meta['versions']['torch']}, mace-torch "
        f"{meta['versions']['mace']}; {meta['date']}.",
        "",
        f"Machine (measured at start, load average {meta['load_avg_at_start']:.1f}): matmul "
        f"numpy {m['numpy_matmul_gflops_float32']:.0f} / jax {m['jax_matmul_gflops_float32']:.0f} GFLOP/s "
        f"float32, numpy {m['numpy_matmul_gflops_float64']:.0f} / jax {m['jax_matmul_gflops_float64']:.0f} "
        f"GFLOP/s float64; memory {m['numpy_copy_gbs']:.0f} GB/s (numpy copy), "
        f"{m['jax_sum_gbs']:.0f} GB/s (jax sum).",
        "",
        "| model | dtype | task | backend | jaxtl ms | mace-torch ms | torch/jaxtl | load avg | jaxtl first call s | "
        "XLA compile s | XLA GFLOP | jaxtl GFLOP/s | roofline ms | of roofline | max abs dF eV/A |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['task']} | {r['backend']} | {r['jaxtl_ms']:.1f} | "
            f"{r['torch_ms']:.1f} | "
            f"{r['torch_over_jaxtl']:.2f} | {r['load_avg_1min']:.1f} | {r['jaxtl_first_call_s']:.1f} | "
            f"{r['jaxtl_compile_s']:.1f} | {r['xla_gflop']:.2f} | {r['jaxtl_gflops']:.1f} | "
            f"{r['roofline_ms']:.1f} | {r['roofline_fraction']:.0%} | {r['max_abs_dF']:.1e} |"
        )
    bandwidth = "copy bandwidth" if meta["device"] == "cpu" else "jax sum bandwidth"
    lines += [
        "",
        f"Roofline: max(XLA FLOPs / jax matmul peak of the dtype, XLA bytes / {bandwidth}); XLA's "
        "byte count is an upper bound on traffic (it counts every operand of every fusion), so the "
        "fraction is a rough guide. On a shared machine read the ratios, and the load average "
        "next to each row: under contention mace-torch's threads suffer more than XLA's, so "
        "ratios measured under load overstate jaxtl's lead over a quiet machine.",
        "",
        f"Command: `{meta['command']}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = harness.resolve_device(args.device)  # before jax is imported
    import mace  # noqa: F401  (before e3nn)
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    import jax

    jax.config.update("jax_enable_x64", True)
    # torch computes float32 matmuls in full float32 (no TF32); on a GPU jax's default may not
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    from jaxtl.convert.convert import from_torch_module

    if device == "gpu":
        hardware = f"{torch.cuda.get_device_name(0)}; jax {jax.devices()[0].device_kind}"
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load0 = os.getloadavg()[0]
    machine = machine_limits(device)
    print(f"[speed] device {device} ({hardware}); machine {machine} (load {load0:.1f})", flush=True)
    atoms = harness.copper_cell(args.cells)
    rows, n_edges = [], None
    for name in args.models:
        torch_model = harness.build_torch_model(name)
        jax_cv = from_torch_module(torch_model)
        for dtype in args.dtypes:
            for task in args.tasks:
                rows += run_rows(name, dtype, task, torch_model, jax_cv, atoms, machine, args, device)
        if n_edges is None:
            n_edges = harness.TorchSide(torch_model, atoms, "float64", "cpu").n_edges
    meta = {
        "device": device,
        "requested_device": args.device,
        "hardware": hardware,
        "machine": machine,
        "load_avg_at_start": load0,
        "load_avg_at_end": os.getloadavg()[0],
        "n_atoms": len(atoms),
        "n_edges": n_edges,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_threads": threads,
        "torch_process": args.torch_process,
        "jax_matmul_precision": args.matmul_precision,
        **harness.run_metadata("speed.py", argv),
    }
    stem = Path(args.out) if args.out else harness.RESULTS / f"speed_{device}"
    harness.write_results(stem, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
