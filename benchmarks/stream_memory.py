"""Streaming from a prepared (HDF5) set against the in-memory path: peak memory and throughput.

    python benchmarks/stream_memory.py --sizes 2000 20000 200000 --memory-sizes 2000 20000 --train-size 2000

For each size N, a fresh process: (a) `stream`: open the prepared set of N generated
structures and produce the padded batches of one epoch (the host pipeline alone, up to
--max-batches; 0: the whole epoch), reporting peak RSS and batches/s; (b) `memory`
(sizes in --memory-sizes): the same structures built in memory (GraphDataset +
epoch_batches), the same figures. Then (c) `train`: a small MACE trained for
--train-epochs epochs on --train-size structures from each source, reporting the
median steps/s and CPU ms a step of the epochs after the first (which compiles); the
sources (and, with --prefetch-ab, reading ahead on and off) alternate, one fresh
process each, --train-repeats times, so that all see the same drifting load. The
summary gives each mode's median with its range and the median of the streamed /
in-memory ratios of the same round.

Every process makes jaxtl's CPU settings (`jaxtl.configure_cpu`, as the `jaxtl`
command does).

Generated structures: 2-16 atoms (H, C, O) at random in cells of 5-7 A, r_max 4 A,
random labels. Writes benchmarks/results/stream_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
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
    from jaxtl.cpu import configure_cpu

    configure_cpu()  # the parent restarted with the glibc tunables; the children inherit them
    load = os.getloadavg()[0]
    out = _child(args)
    return {**out, "load_start": load, "load_end": os.getloadavg()[0]}


def _child(args) -> dict:
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
        out = pipeline(items, args.max_batches or None)
        return {**out, "rss_after_open_mb": rss_open, "peak_rss_mb": peak_rss_mb()}
    if args.mode == "memory":
        from jaxtl.graph.dataset import GraphDataset
        from jaxtl.train.data import epoch_batches

        data = GraphDataset(list(structures(args.n)), R_MAX, progress=False)
        items = epoch_batches(data, BATCH, seed=0, shuffle=True, dtype=np.float32)(0)
        out = pipeline(items, args.max_batches or None)
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
    cfg = TrainConfig(
        max_num_epochs=args.epochs, dtype="float32", progress_bar=False, plot=False, prefetch=args.prefetch
    )
    calls = []  # (epoch, process CPU s) at each request of an epoch's batches

    def timed(epoch):
        calls.append((epoch, cpu_s()))
        return batches(epoch)

    with tempfile.TemporaryDirectory() as out:
        res = train_loop(make_predict(MACE(config)), init_variables(config), timed, [], cfg, out)
    steps = len(batches(1))
    # epochs after the first (which compiles). CPU of an epoch: from its batches' request
    # to the next request, so its steps plus one checkpoint save; less sensitive than wall
    # time to other load on the machine
    walls = [r["time_s"] for r in res.history[1:]]
    at = [e for e, _ in calls]
    cpus = [calls[at.index(e) + 1][1] - calls[at.index(e)][1] for e in range(1, args.epochs)]
    return {
        "steps_per_epoch": steps,
        "epoch_s": walls,
        "steps_per_s": steps / float(np.median(walls)),
        "cpu_ms_per_step": 1e3 * float(np.median(cpus)) / steps,
        "peak_rss_mb": peak_rss_mb(),
    }


def spawn(*argv) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, argv)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _train_rounds(args, work: Path) -> list[dict]:
    """Alternating training runs, one fresh process each: memory, stream (and their prefetch-0 twins)."""
    modes = [("train-memory", ["--n", args.train_size]), ("train-stream", ["--dir", work / f"set-{args.train_size}"])]
    prefetch = [2, 0] if args.prefetch_ab else [2]
    rows = []
    for r in range(args.train_repeats):
        for depth in prefetch:
            for mode, where in modes:
                argv = ["--mode", "train", *where, "--epochs", args.train_epochs, "--prefetch", depth]
                rows.append({"mode": mode, "n": args.train_size, "prefetch": depth, "round": r, **spawn(*argv)})
                print(rows[-1], flush=True)
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    """Per (mode, prefetch): median steps/s with range; per prefetch: median of the rounds' stream/memory ratios."""
    train = [r for r in rows if r["mode"].startswith("train-")]
    out = []
    for depth in sorted({r["prefetch"] for r in train}, reverse=True):
        for mode in ("train-memory", "train-stream"):
            v = [r["steps_per_s"] for r in train if r["mode"] == mode and r["prefetch"] == depth]
            c = [r["cpu_ms_per_step"] for r in train if r["mode"] == mode and r["prefetch"] == depth]
            out.append(
                {
                    "mode": mode,
                    "prefetch": depth,
                    "runs": len(v),
                    "steps_per_s_median": float(np.median(v)),
                    "steps_per_s_min": min(v),
                    "steps_per_s_max": max(v),
                    "cpu_ms_per_step_median": float(np.median(c)),
                }
            )
        by_round = {}
        for r in train:
            if r["prefetch"] == depth:
                by_round.setdefault(r["round"], {})[r["mode"]] = r["steps_per_s"]
        ratios = [d["train-stream"] / d["train-memory"] for d in by_round.values() if len(d) == 2]
        out.append(
            {
                "mode": "stream / memory",
                "prefetch": depth,
                "runs": len(ratios),
                "ratio_median": float(np.median(ratios)),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
    return out


def markdown(rows, meta):
    loads = [x for r in rows for x in (r.get("load_start"), r.get("load_end")) if x is not None]
    lines = [
        f"`{meta['command']}` ({meta['date']}), on {meta['device']}; load average "
        f"{min(loads):.1f}-{max(loads):.1f} during the runs",
        "",
        "Host pipeline alone (one epoch's padded batches of 10, or --max-batches of them):",
        "",
        "| mode | N | batches | batches/s | CPU ms/batch | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mode"] in ("stream", "memory"):
            lines.append(
                f"| {r['mode']} | {r['n']} | {r['batches']} | {r['batches_per_s']:.1f} | "
                f"{r['cpu_ms_per_batch']:.2f} | {r['peak_rss_mb']:.0f} |"
            )
    lines += [
        "",
        "Training (small MACE, interleaved fresh processes; steps/s: median of the epochs after the first):",
        "",
        "| round | mode | prefetch | steps/s | CPU ms/step | peak RSS MB | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["mode"].startswith("train-"):
            lines.append(
                f"| {r['round']} | {r['mode']} | {r['prefetch']} | {r['steps_per_s']:.1f} | "
                f"{r['cpu_ms_per_step']:.1f} | {r['peak_rss_mb']:.0f} | {r['load_start']:.1f} |"
            )
    lines += ["", "| summary | prefetch | runs | median | range |", "|---|---|---|---|---|"]
    for s in meta["summary"]:
        if "ratio_median" in s:
            lines.append(
                f"| steps/s stream / memory (same round) | {s['prefetch']} | {s['runs']} | "
                f"{s['ratio_median']:.3f} | {s['ratio_min']:.3f}-{s['ratio_max']:.3f} |"
            )
        else:
            lines.append(
                f"| {s['mode']} steps/s | {s['prefetch']} | {s['runs']} | {s['steps_per_s_median']:.1f} | "
                f"{s['steps_per_s_min']:.1f}-{s['steps_per_s_max']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    p.add_argument("--memory-sizes", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--train-size", type=int, default=2000)
    p.add_argument("--max-batches", type=int, default=0, help="batches produced per pipeline run (0: one epoch)")
    p.add_argument("--train-repeats", type=int, default=3, help="rounds of alternating training runs")
    p.add_argument("--train-epochs", type=int, default=4, help="epochs of each training run (the first compiles)")
    p.add_argument("--prefetch-ab", action="store_true", help="also train with reading ahead off (prefetch 0)")
    p.add_argument("--work", default="/tmp/jaxtl_stream_memory", help="where the prepared sets are written")
    p.add_argument("--out", default=str(HERE / "results" / "stream_memory"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    p.add_argument("--epochs", type=int, default=4, help=argparse.SUPPRESS)
    p.add_argument("--prefetch", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0

    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # glibc tunables in the environment the children inherit, as the jaxtl command
    sys.path.insert(0, str(HERE))
    from _harness import hardware_line, run_metadata, write_results

    meta = run_metadata("stream_memory.py", argv)  # the commit and date the run starts from
    rows = []
    work = Path(args.work)
    for n in sorted(set(args.sizes) | {args.train_size}):
        d = work / f"set-{n}"
        if not (d / "meta.json").exists():
            rows.append({"mode": "generate", "n": n, **spawn("--mode", "generate", "--n", n, "--dir", d)})
            print(rows[-1], flush=True)
    for n in args.sizes:
        argv_n = ["--mode", "stream", "--dir", work / f"set-{n}", "--max-batches", args.max_batches]
        rows.append({"mode": "stream", "n": n, **spawn(*argv_n)})
        print(rows[-1], flush=True)
    for n in args.memory_sizes:
        rows.append(
            {"mode": "memory", "n": n, **spawn("--mode", "memory", "--n", n, "--max-batches", args.max_batches)}
        )
        print(rows[-1], flush=True)
    rows += _train_rounds(args, work)

    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["device"] = f"CPU ({hardware_line()}, shared), no GPU"
    meta["summary"] = _summary(rows)
    print(write_results(Path(args.out), meta, rows, markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
