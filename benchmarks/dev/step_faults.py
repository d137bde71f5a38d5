"""Page faults and kernel time per training step, under the glibc settings the process has.

The measurement behind jaxtl/_allocator.py: jaxtl's training step of
benchmarks/bench_train_step.py (5 mlearn Si cells), timed one step at a time with
`getrusage` (wall ms, kernel ms, minor faults), either alone or each step right after a
mace-torch step in the same process. The script does not restart itself: set `GLIBC_TUNABLES` by hand to compare settings, e.g.

    T=glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python benchmarks/dev/step_faults.py --dispatch async
    GLIBC_TUNABLES=$T python benchmarks/dev/step_faults.py --dispatch async
    GLIBC_TUNABLES=$T python benchmarks/dev/step_faults.py --dispatch inline          # what jaxtl runs
    GLIBC_TUNABLES=$T python benchmarks/dev/step_faults.py --hidden 64x0e+64x1o --dtype float64 --after-torch

Prints one line per code: median (min-max) wall ms, median kernel ms, median faults.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
import bench_train_step as bench  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="32x0e")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument(
        "--dispatch",
        default="inline",
        choices=("inline", "async"),
        help="JAX's CPU dispatch: inline (jaxtl's restarted processes) or async (JAX's default)",
    )
    p.add_argument("--after-torch", action="store_true", help="each jaxtl step right after a mace-torch step")
    p.add_argument("--steps", type=int, default=8, help="timed steps per code")
    return p.parse_args(argv)


def per_step(fn) -> tuple[float, float, int]:
    """(wall ms, kernel ms, minor faults) of one call."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fn()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return 1e3 * (t1 - t0), 1e3 * (r1.ru_stime - r0.ru_stime), r1.ru_minflt - r0.ru_minflt


def summary(name: str, rows, args) -> str:
    wall, kernel, faults = zip(*rows)
    return (
        f"{os.environ.get('GLIBC_TUNABLES', '(no GLIBC_TUNABLES)')} | dispatch {args.dispatch} | "
        f"{args.hidden} {args.dtype}{' after torch' if args.after_torch else ''} | {name}: wall "
        f"{statistics.median(wall):.1f} ms ({min(wall):.0f}-{max(wall):.0f}), kernel "
        f"{statistics.median(kernel):.1f} ms, faults {statistics.median(faults):.0f}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    import mace  # noqa: F401  (before e3nn)
    import torch

    torch.set_num_threads(os.cpu_count())
    from jaxtl import _xla_flags

    _xla_flags.apply()  # XLA as jaxtl.configure_cpu() sets it; glibc as GLIBC_TUNABLES says, nothing else
    import jax

    if args.dispatch == "inline":
        from jaxtl._allocator import inline_cpu_dispatch

        inline_cpu_dispatch()
    from jaxtl.convert.convert import from_torch_module

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    frames = bench.read_structures(str(bench.DATA), 5)
    torch_model = bench.build_torch_model(args.hidden, 20.0)
    jaxtl_step = bench.JaxTrainer(*from_torch_module(torch_model), frames, args.dtype, False)
    torch_step = bench.TorchTrainer(torch_model, frames, args.dtype, "cpu", False) if args.after_torch else None
    for _ in range(2):  # compile and settle
        jaxtl_step()
        if torch_step:
            torch_step()
    rows = {"jaxtl": [], "mace-torch": []}
    for _ in range(args.steps):
        if torch_step:
            rows["mace-torch"].append(per_step(torch_step))
        rows["jaxtl"].append(per_step(jaxtl_step))
    for name, r in rows.items():
        if r:
            print(summary(name, r, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
