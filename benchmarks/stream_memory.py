"""Streaming from a prepared (HDF5) set against the in-memory path: peak memory and throughput.

    python benchmarks/stream_memory.py --sizes 2000 20000 200000 --memory-sizes 2000 20000 --train-size 2000

For each size N, a fresh process: (a) `stream`: open the prepared set of N generated
structures and produce the padded batches of one epoch (the host pipeline alone),
reporting peak RSS and batches/s; (b) `memory` (sizes in --memory-sizes): the same
structures built in memory (GraphDataset + epoch_batches), the same figures. Then
(c) `train`: a small MACE trained for two epochs on --train-size structures from
each source, reporting the second epoch's steps/s and CPU ms a step (the first
compiles), alternating the sources --train-repeats times.

Generated structures: 2-16 atoms (H, C, O) at random in cells of 5-7 A, r_max 4 A,
random labels. Writes benchmarks/results/stream_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
R_MAX = 4.0
BATCH = 10


def structures(n: int, seed: int = 0):
    from jaxtl.graph.io import Configuration

    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(2, 17))
        out = Configuration(
            atomic_numbers=rng.choice([1, 6, 8], k),
            positions=rng.uniform(0, 5.0, (k, 3)),
            cell=np.diag(rng.uniform(5.0, 7.0, 3)),
            pbc=(True, True, True),
            energy=float(rng.normal()) - 3.0 * k,
            forces=rng.normal(size=(k, 3)),
            energy_weight=1.0,
            forces_weight=1.0,
            index=i,
        )
        yield out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pipeline(items, max_batches: int | None) -> dict:
    from jaxtl.train.parallel import group_batches

    t0, c0 = time.perf_counter(), cpu_s()
    n = 0
    for _ in group_batches(items, 1, np.float32):
        n += 1
        if max_batches and n >= max_batches:
            break
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    return {"batches": n, "batches_per_s": n / wall, "cpu_ms_per_batch": 1e3 * cpu / n}


def child(args) -> dict:
    if args.mode == "generate":
        from jaxtl.graph.ondisk import write_ondisk

        t0 = time.perf_counter()
        write_ondisk(structures(args.n), args.dir, R_MAX, shard_size=10_000)
        return {"write_s": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}
    if args.mode == "stream":
        from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches

        data = OnDiskDataset(args.dir)
        rss_open = peak_rss_mb()
        items = streamed_batches(data, BATCH, seed=0)(0)
        out = pipeline(items, args.max_batches)
        return {**out, "rss_after_open_mb": rss_open, "peak_rss_mb": peak_rss_mb()}
    if args.mode == "memory":
        from jaxtl.graph.dataset import GraphDataset
        from jaxtl.train.data import epoch_batches

        data = GraphDataset(list(structures(args.n)), R_MAX, progress=False)
        items = epoch_batches(data, BATCH, seed=0, shuffle=True, dtype=np.float32)(0)
        out = pipeline(items, args.max_batches)
        return {**out, "peak_rss_mb": peak_rss_mb()}
    if args.mode == "train":
        return train(args)
    raise ValueError(args.mode)


def train(args) -> dict:
    import tempfile

    from jaxtl.graph.dataset import GraphDataset
    from jaxtl.model import MACE, MACEConfig, init_variables, make_predict
    from jaxtl.train import TrainConfig
    from jaxtl.train import train as train_loop
    from jaxtl.train.data import epoch_batches

    config = MACEConfig(
        atomic_numbers=(1, 6, 8),
        r_max=R_MAX,
        hidden_irreps="16x0e",
        max_ell=2,
        correlation=(2, 2),
        num_interactions=2,
        avg_num_neighbors=(8.0, 8.0),
        dtype="float32",
    )
    if args.dir:
        from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches

        batches = streamed_batches(OnDiskDataset(args.dir), BATCH, seed=0, dtype=np.float32)
    else:
        data = GraphDataset(list(structures(args.n)), R_MAX, progress=False)
        batches = epoch_batches(data, BATCH, seed=0, shuffle=True, dtype=np.float32)
    cfg = TrainConfig(max_num_epochs=2, dtype="float32", progress_bar=False, plot=False)
    calls = []  # (epoch, process CPU s) at each request of an epoch's batches

    def timed(epoch):
        calls.append((epoch, cpu_s()))
        return batches(epoch)

    with tempfile.TemporaryDirectory() as out:
        res = train_loop(make_predict(MACE(config)), init_variables(config), timed, [], cfg, out)
    steps = len(batches(1))
    second = res.history[1]["time_s"]
    # CPU of the second epoch: from its batches' request to the next request (the final
    # metrics), so its steps plus one checkpoint save and restore; less sensitive than
    # wall time to other load on the machine
    at = [e for e, _ in calls].index(1)
    epoch_cpu = calls[at + 1][1] - calls[at][1]
    return {
        "steps_per_epoch": steps,
        "epoch2_s": second,
        "steps_per_s": steps / second,
        "cpu_ms_per_step": 1e3 * epoch_cpu / steps,
        "peak_rss_mb": peak_rss_mb(),
    }


def spawn(*argv) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, argv)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--max-batches", type=int, default=2000, help="batches produced per pipeline run")
    p.add_argument("--train-repeats", type=int, default=2, help="alternating pairs of training runs")
    p.add_argument("--work", default="/tmp/jaxtl_stream_memory", help="where the prepared sets are written")
    p.add_argument("--out", default=str(HERE / "results" / "stream_memory"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    sys.path.insert(0, str(HERE))
    from _results import run_metadata, write_results

    rows = []
    work = Path(args.work)
    for n in sorted(set(args.sizes) | {args.train_size}):
        d = work / f"set-{n}"
        if not (d / "meta.json").exists():
            rows.append({"mode": "generate", "n": n, **spawn("--mode", "generate", "--n", n, "--dir", d)})
            print(rows[-1], flush=True)
    for n in args.sizes:
        rows.append(
            {
                "mode": "stream",
                "n": n,
                **spawn("--mode", "stream", "--dir", work / f"set-{n}", "--max-batches", args.max_batches),
            }
        )
        print(rows[-1], flush=True)
    for n in args.memory_sizes:
        rows.append(
            {"mode": "memory", "n": n, **spawn("--mode", "memory", "--n", n, "--max-batches", args.max_batches)}
        )
        print(rows[-1], flush=True)
    for _ in range(args.train_repeats):  # alternate, the machine's load drifts
        rows.append({"mode": "train-memory", "n": args.train_size, **spawn("--mode", "train", "--n", args.train_size)})
        print(rows[-1], flush=True)
        rows.append(
            {
                "mode": "train-stream",
                "n": args.train_size,
                **spawn("--mode", "train", "--dir", work / f"set-{args.train_size}"),
            }
        )
        print(rows[-1], flush=True)

    def markdown(rows, meta):
        lines = [
            f"`{meta['command']}` ({meta['date']})",
            "",
            "| mode | N | batches/s | CPU ms/batch | steps/s | CPU ms/step | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r["mode"] == "generate":
                continue
            lines.append(
                f"| {r['mode']} | {r['n']} | {r.get('batches_per_s', float('nan')):.1f} | "
                f"{r.get('cpu_ms_per_batch', float('nan')):.2f} | {r.get('steps_per_s', float('nan')):.2f} | "
                f"{r.get('cpu_ms_per_step', float('nan')):.1f} | "
                f"{r['peak_rss_mb']:.0f} |"
            )
        return "\n".join(lines) + "\n"

    meta = run_metadata("stream_memory.py", argv)
    meta["jaxtl_commit"] = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    meta["device"] = f"CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    print(write_results(Path(args.out), meta, rows, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
