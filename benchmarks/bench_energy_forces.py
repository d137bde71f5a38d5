"""Energy + forces: jaxtl against mace-torch, side by side in one process, same weights.

Models: MACE-MP-0 small-shaped (89 elements, 128x0e) and medium-shaped (128x0e+128x1o),
both correlation 3, r_max 6, 10 Bessel functions, radial MLP [64, 64, 64], max_ell 3,
Residual/Residual interactions (the factories of tests/convert/torch_models.py, randomly
initialised and perturbed). Structure: a rattled 108-atom Cu fcc cell (3x3x3 conventional
cubic cells, a = 3.61 A, rattle 0.05 A), 8424 edges within 6 A.

Per (model, dtype) the script reports
  * jaxtl's first call (trace + XLA compile + one run) apart from the steady state;
  * the median of `--repeats` timed calls after `--warmup` untimed ones, for both codes,
    the two codes' calls alternating (robust to load from other processes)
    (torch: `model(batch, compute_force=True)`, i.e. forward + autograd backward as mace's
    calculator runs it, eval mode, the batch built once by mace's own data pipeline;
    jaxtl: the jit-compiled `predict(graph, compute_stress=False)` on a device-resident
    padded graph);
  * the ratio torch / jaxtl (> 1: jaxtl is faster), atoms/s of both;
  * a parity sanity check from the same run: largest |dF| and |dE| between the two.

Results go to `benchmarks/results/energy_forces_<device>.json` and `.md`.

    python benchmarks/bench_energy_forces.py                      # CPU, everything
    python benchmarks/bench_energy_forces.py --models small --dtypes float32 --repeats 5
    python benchmarks/bench_energy_forces.py --device gpu         # falls back to CPU if none
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
from _results import run_metadata, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MODELS = {"small": "mp0_small", "medium": "mp0_medium"}
DTYPES = ("float32", "float64")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="small,medium", help="comma list of: small, medium")
    p.add_argument("--dtypes", default="float32,float64", help="comma list of: float32, float64")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per code (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (after compile)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--backends", default="xla",
                   help="comma list of jaxtl backends, timed side by side: xla, cueq (cuEquivariance)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--matmul-precision", default="highest", choices=("default", "high", "highest"),
                   help="jax float32 matmul precision on GPU ('highest' = full fp32, as torch)")
    p.add_argument("--cells", type=int, default=3, help="conventional fcc cells per side (3: 108 atoms)")
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/energy_forces_<device>)")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [m for m in args.models if m not in MODELS] + [d for d in args.dtypes if d not in DTYPES]
    if bad:
        p.error(f"unknown model/dtype {bad}; models: {sorted(MODELS)}, dtypes: {list(DTYPES)}")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def resolve_device(requested: str) -> str:
    """'gpu' only when both torch and jax see a CUDA GPU; otherwise say why and use the CPU.

    Must run before jax is imported: on the CPU path JAX_PLATFORMS pins jax to the host.
    """
    if requested == "cpu":
        os.environ["JAX_PLATFORMS"] = "cpu"
        return "cpu"
    # jax would otherwise take 75 % of the GPU's memory up front, leaving torch the rest.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import torch

    reasons = []
    if not torch.cuda.is_available():
        reasons.append(f"torch {torch.__version__} sees no CUDA device")
    try:
        import jax

        if not jax.devices("gpu"):
            reasons.append("jax lists no gpu device")
    except RuntimeError as exc:  # jax raises when no gpu backend is installed
        reasons.append(f"jax has no gpu backend ({str(exc).splitlines()[0][:120]})")
    if reasons:
        print(f"[bench] --device gpu requested but unavailable: {'; '.join(reasons)}. "
              "Falling back to --device cpu.", flush=True)
        try:
            import jax

            jax.config.update("jax_platforms", "cpu")
        except Exception:
            pass
        return "cpu"
    return "gpu"


def copper_cell(cells: int):
    """Rattled Cu fcc supercell: 4 * cells^3 atoms, a = 3.61 A, rattle 0.05 A (seed 42)."""
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((cells, cells, cells))
    atoms.rattle(stdev=0.05, seed=42)
    return atoms


def timed(fn, sync) -> float:
    t0 = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t0


# Seconds of rest before each timed call. A side's worker threads keep spinning for a
# while after its call returns (torch's OpenMP threads by default): the other side's call
# would then share the cores with them. On the 2-core CPU, jaxtl's small-model call took
# ~150 ms right after a mace-torch call and ~95 ms alone.
SETTLE_S = 0.05


def interleaved(sides, repeats: int, warmup: int, settle: float = SETTLE_S,
                block: int = 1) -> tuple[list[float], list[list[float]]]:
    """First-call seconds and timed calls of each side, alternating side by side.

    Alternating (a, b, a, b, ...) rather than timing one side's block and then the
    other's makes the ratio robust to load from other processes on a shared machine:
    both sides see the same background, call for call. Each timed call starts after
    `settle` seconds of rest, so that neither side runs among the other's spinning threads.
    With `block` > 1 each side makes `block` consecutive calls per turn (a, a, a, b, b,
    b, ...), as a training loop does; every call is timed, the first of a turn included.
    """
    first = [timed(side, side.sync) for side in sides]
    for _ in range(max(warmup - 1, 0)):
        for side in sides:
            timed(side, side.sync)
    times = [[] for _ in sides]
    while len(times[0]) < repeats:
        for k, side in enumerate(sides):
            for _ in range(min(block, repeats - len(times[k]))):
                time.sleep(settle)
                times[k].append(timed(side, side.sync))
    return first, times


class TorchSide:
    """A mace-torch model in `dtype` on `device` and one pre-built batch (mace's pipeline)."""

    def __init__(self, model, atoms, dtype: str, device: str):
        import copy

        import torch
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools
        from mace.tools.utils import AtomicNumberTable

        self.torch = torch
        self.dtype = dtype
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        model = copy.deepcopy(model)
        model = model.double() if dtype == "float64" else model.float()
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():  # as mace's calculator: no parameter gradients
            p.requires_grad_(False)
        z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
        heads = list(getattr(model, "heads", None) or ["Default"])
        with torch_tools.default_dtype(dtype):
            config = mace_data.config_from_atoms(atoms, head_name=heads[0])
            data = mace_data.AtomicData.from_config(
                config, z_table=z_table, cutoff=float(model.r_max), heads=heads
            )
            batch = torch_geometric.Batch.from_data_list([data]).to(self.device)
        self.batch = batch.to_dict()
        self.n_edges = int(data.edge_index.shape[1])

    def __call__(self):
        from mace.tools import torch_tools

        with torch_tools.default_dtype(self.dtype):
            return self.model(
                self.batch, training=False, compute_force=True,
                compute_virials=False, compute_stress=False,
            )

    def sync(self, out):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()
        return out


class JaxSide:
    """The same weights converted in memory to jaxtl; a padded graph put on the device once."""

    def __init__(self, config, variables, atoms, dtype: str, backend: str = "xla"):
        import jax
        import numpy as np

        from jaxtl.api import build_loaded_model
        from jaxtl.convert.verify import jaxtl_batch

        self.jax = jax
        self.loaded = build_loaded_model(config, variables, dtype=dtype, backend=backend)
        batch = jaxtl_batch([atoms], config.r_max, np.dtype(dtype))
        self.graph = jax.device_put(batch.graph)
        self.n_edges_padded = int(batch.graph.senders.shape[0])
        self.n_nodes_padded = int(batch.graph.positions.shape[0])

    def __call__(self):
        return self.loaded.predict(self.graph, compute_stress=False)

    def sync(self, out):
        return self.jax.block_until_ready(out)

    def flops(self):
        """XLA's own FLOP estimate of the compiled energy+forces (None if unavailable)."""
        try:
            compiled = self.loaded._predict.lower(self.loaded.variables, self.graph, False).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, (list, tuple)) else cost
            return float(cost.get("flops")) if cost and "flops" in cost else None
        except Exception:  # cost analysis is advisory
            return None


def build_torch_model(name: str):
    """The perturbed float64 mace-torch factory model of tests/convert/torch_models.py."""
    import importlib.util

    import mace  # noqa: F401  (before e3nn, as everywhere in jaxtl)

    # Loaded by path: an installed package called `tests` may shadow the repository's.
    path = ROOT / "tests" / "convert" / "torch_models.py"
    spec = importlib.util.spec_from_file_location("jaxtl_bench_torch_models", path)
    torch_models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_models)

    model, _ = torch_models.REGISTRY[MODELS[name]](seed=0)
    return model


def run_case(name, dtype, torch_model, jax_cv, atoms, args, device) -> list[dict]:
    """One row per jaxtl backend; all backends and mace-torch alternate in one loop."""
    import numpy as np

    n_atoms = len(atoms)
    jsides = [JaxSide(*jax_cv, atoms, dtype, backend) for backend in args.backends]
    tside = TorchSide(torch_model, atoms, dtype, device)

    firsts, times = interleaved([*jsides, tside], args.repeats, args.warmup)
    t_first, t_times, t_out = firsts[-1], times[-1], tside()
    f_t = t_out["forces"].detach().cpu().numpy()
    e_t = float(t_out["energy"].detach().cpu().numpy().reshape(-1)[0])
    t_med = statistics.median(t_times)
    rows = []
    for backend, jside, j_first, j_times in zip(args.backends, jsides, firsts, times):
        j_out = jside()
        f_j = np.asarray(j_out["forces"])[:n_atoms]
        e_j = float(np.asarray(j_out["energy"])[0])
        j_med = statistics.median(j_times)
        flops = jside.flops()
        row = {
            "model": name,
            "dtype": dtype,
            "backend": backend,
            "device": device,
            "n_atoms": n_atoms,
            "n_edges": tside.n_edges,
            "padded_nodes": jside.n_nodes_padded,
            "padded_edges": jside.n_edges_padded,
            "jaxtl_first_call_s": j_first,
            "jaxtl_median_ms": 1e3 * j_med,
            "jaxtl_times_ms": [1e3 * t for t in j_times],
            "torch_first_call_s": t_first,
            "torch_median_ms": 1e3 * t_med,
            "torch_times_ms": [1e3 * t for t in t_times],
            "ratio_torch_over_jaxtl": t_med / j_med,
            "jaxtl_atoms_per_s": n_atoms / j_med,
            "torch_atoms_per_s": n_atoms / t_med,
            "max_abs_dF": float(np.max(np.abs(f_t - f_j))),
            "max_abs_F": float(np.max(np.abs(f_t))),
            "abs_dE": abs(e_t - e_j),
            "energy": e_t,
            "jaxtl_xla_gflop": None if flops is None else flops / 1e9,
        }
        print(
            f"[bench] {name:6s} {dtype} {backend:4s}: jaxtl {row['jaxtl_median_ms']:8.1f} ms "
            f"(first call {j_first:5.1f} s) | mace-torch {row['torch_median_ms']:8.1f} ms | "
            f"torch/jaxtl {row['ratio_torch_over_jaxtl']:5.2f} | max|dF| {row['max_abs_dF']:.2e} "
            f"|dE| {row['abs_dE']:.2e}",
            flush=True,
        )
        rows.append(row)
    return rows


def markdown(rows, meta) -> str:
    lines = [
        f"# Energy + forces, jaxtl vs mace-torch ({meta['device']})",
        "",
        f"{meta['n_atoms']}-atom rattled Cu fcc cell, {meta['n_edges']} edges (r_max 6 A); "
        f"median of {meta['repeats']} calls after {meta['warmup']} warm-up calls; "
        f"{meta['hardware']}; torch threads {meta['torch_threads']}; load average at end "
        f"{meta['load_average_at_end'][0]:.1f}; calls alternate jaxtl / torch; "
        f"jax {meta['versions']['jax']}, torch {meta['versions']['torch']}, "
        f"mace-torch {meta['versions']['mace']}; {meta['date']}.",
        "",
        "| model | dtype | backend | jaxtl ms | mace-torch ms | torch/jaxtl | jaxtl atoms/s | "
        "mace-torch atoms/s | jaxtl first call s | XLA GFLOP | max abs dF eV/A | abs dE eV |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gflop = "n/a" if r["jaxtl_xla_gflop"] is None else f"{r['jaxtl_xla_gflop']:.1f}"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r.get('backend', 'xla')} | {r['jaxtl_median_ms']:.1f} | {r['torch_median_ms']:.1f} | "
            f"{r['ratio_torch_over_jaxtl']:.2f} | {r['jaxtl_atoms_per_s']:.0f} | "
            f"{r['torch_atoms_per_s']:.0f} | {r['jaxtl_first_call_s']:.1f} | {gflop} | "
            f"{r['max_abs_dF']:.1e} | {r['abs_dE']:.1e} |"
        )
    lines.append("")
    lines.append(f"Command: `{meta['command']}`")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)

    import mace  # noqa: F401  (must precede e3nn)
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    import jax

    if "float64" in args.dtypes:
        jax.config.update("jax_enable_x64", True)
    # torch computes float32 matmuls in full float32 (no TF32) by default; on a GPU jax's
    # default may use TF32, which is a different (less accurate) computation.
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    from jaxtl.convert.convert import from_torch_module

    atoms = copper_cell(args.cells)
    if device == "gpu":
        hardware = f"{torch.cuda.get_device_name(0)}; jax {jax.devices()[0].device_kind}"
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"[bench] device {device} ({hardware}); {len(atoms)} atoms; jax devices {jax.devices()}",
          flush=True)

    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        torch_model = build_torch_model(name)
        jax_cv = from_torch_module(torch_model)
        print(f"[bench] built {name} (torch + conversion) in {time.perf_counter() - t0:.1f} s",
              flush=True)
        for dtype in args.dtypes:
            rows += run_case(name, dtype, torch_model, jax_cv, atoms, args, device)

    meta = {
        "device": device,
        "requested_device": args.device,
        "hardware": hardware,
        "n_atoms": len(atoms),
        "n_edges": rows[0]["n_edges"] if rows else None,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_threads": threads,
        "jax_matmul_precision": args.matmul_precision,
        "load_average_at_end": os.getloadavg(),
        **run_metadata("bench_energy_forces.py", argv),
    }
    stem = Path(args.out) if args.out else RESULTS / f"energy_forces_{device}"
    write_results(stem, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl._allocator import restart_with_hugepages

    restart_with_hugepages()  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
