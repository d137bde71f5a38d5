"""jaxtl's CPU settings (`jaxtl.configure_cpu`, jaxtl/cpu.py) against a plain import.

Energy+forces of an MP-0-shaped model on the 108-atom Cu cell of `benchmarks/_harness.py`,
each setting in a fresh `python` process (the settings are per process):

  * `plain`: `import jaxtl` only, as a script that does not ask: glibc's, XLA's and
    JAX's defaults;
  * `configure`: a script's one line, `jaxtl.configure_cpu()`, before the first JAX
    computation (glibc's `mallopt`, XLA flags, CPU dispatch inline);
  * `command`: `jaxtl.configure_cpu(restart=True)`, what the `jaxtl` command does
    (the process restarts itself with `GLIBC_TUNABLES`).

Prints the median time of the calls and the minor page faults and kernel time per call.

    python benchmarks/heap_settings.py --model medium --dtype float32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
MODES = ("plain", "configure", "command")


def measure(mode: str, model: str, dtype: str, repeats: int) -> dict:
    """In this process: build the case, time `repeats` calls after two, count faults."""
    import resource
    import statistics
    import time

    import jaxtl

    if mode != "plain":  # before anything starts JAX
        jaxtl.configure_cpu(restart=mode == "command")
    sys.path.insert(0, str(HERE))
    import _harness as bench
    import jax
    import mace  # noqa: F401  (before e3nn, see the README)

    from jaxtl.convert.convert import from_torch_module

    jax.config.update("jax_enable_x64", dtype == "float64")
    side = bench.JaxSide(*from_torch_module(bench.build_torch_model(model)), bench.copper_cell(3), dtype)
    for _ in range(2):
        jax.block_until_ready(side())
    times, before = [], resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(side())
        times.append(time.perf_counter() - t0)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "faults_per_call": (after.ru_minflt - before.ru_minflt) / repeats,
        "kernel_ms_per_call": 1e3 * (after.ru_stime - before.ru_stime) / repeats,
        "async_dispatch": bool(jax.config.read("jax_cpu_enable_async_dispatch")),
        "heap": getattr(jaxtl.cpu_settings(), "heap", ""),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def child_env() -> dict:
    """This environment without jaxtl's settings or switches: each mode starts from glibc's defaults."""
    drop = ("GLIBC_TUNABLES", "XLA_FLAGS", "JAXTL_NO_CPU_TUNING", "JAXTL_NO_HUGEPAGES", "JAXTL_KEEP_XLA_FLAGS")
    return {k: v for k, v in os.environ.items() if k not in drop}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=("small", "medium"), default="medium")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rounds", type=int, default=2, help="each mode this many times, alternating")
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(measure(args.child, args.model, args.dtype, args.repeats)))
        return 0
    print(
        f"[heap] {args.model} {args.dtype} energy+forces, 108 Cu atoms, median of {args.repeats} calls "
        f"after 2, each mode in a fresh process"
    )
    for r in range(args.rounds):
        for mode in MODES:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                mode,
                "--model",
                args.model,
                "--dtype",
                args.dtype,
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(cmd, env=child_env(), capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            res = json.loads(out.stdout.split("RESULT ", 1)[1])
            print(
                f"[heap] round {r + 1} {mode:8s} {res['median_ms']:7.1f} ms (min {res['min_ms']:.1f}), "
                f"{res['faults_per_call']:8.0f} page faults and {res['kernel_ms_per_call']:5.1f} ms in the kernel "
                f"a call; async dispatch {res['async_dispatch']}, heap {res['heap'] or 'glibc default'}, "
                f"XLA_FLAGS {res['xla_flags'] or 'unset'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
