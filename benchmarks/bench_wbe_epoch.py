"""Static shapes over an epoch of the W-Be set: compilations, padding waste, time to pad.

The W-Be data set (../shared/data/wbe/wbe.extxyz.xz, 25k structures of W, Be and W-Be
from a few atoms to a few hundred) is the hard case for static shapes: sizes vary widely.
For one epoch of training batches exactly as `jaxtl train` makes them
(`GraphDataset` -> `choose_budgets` -> `batch_iterator`, shuffled, `--batch-size`
structures a batch), the script reports

  * the distinct padded shapes (`EpochBatches.shapes`) and how many batches each gets;
    a shape-specialised jit (jaxtl's train step) compiles exactly once per shape;
  * the padding waste (`EpochBatches.padding_waste`): the fraction of the padded nodes,
    edges and graphs that are padding, over the epoch;
  * the time to plan the epoch (`batch_iterator`) and to pad every batch (iterating it:
    `pad_batch`, numpy on the host), in total and per batch;
  * with `--jit model` (default), compilations counted by running a jitted function on
    every batch of the epoch: the energy of a tiny jaxtl MACE (W, Be; 8x0e, max_ell 1,
    correlation 2), with a counter bumped while tracing (as `jaxtl.train.step` counts
    them), next to the number of distinct shapes; compile and run time apart.
    `--jit sum` uses a trivial masked sum instead; `--jit none` skips it.

ASE reading the .xz directly is very slow (it seeks, and every seek in an xz stream
decompresses from the start: more than 7 minutes here without finishing), so the file is
decompressed once into `--cache-dir` (default runs/wbe_cache), read from there (~10 s),
and the parsed structures are cached as npz (`wbe-structures-<N|all>.npz`), as are the
neighbour lists (`GraphDataset`'s own cache, same folder). `--limit N` uses the
first N structures (sliced from the full cache when there is one).

Writes `benchmarks/results/wbe_epoch[_<N>].json` and `.md` (or `--out STEM`).

    python benchmarks/bench_wbe_epoch.py                        # all 25k structures
    python benchmarks/bench_wbe_epoch.py --limit 2000 --jit model
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as harness  # noqa: E402

ROOT, RESULTS = harness.ROOT, harness.RESULTS


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="the W-Be set (default: jaxtl.datasets' wbe)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N structures")
    p.add_argument("--batch-size", type=int, default=10, help="structures per batch (mace-torch default 10)")
    p.add_argument("--r-max", type=float, default=5.0, help="cutoff in A")
    p.add_argument("--seed", type=int, default=123, help="shuffling seed (jaxtl's DataConfig default)")
    p.add_argument("--epoch", type=int, default=0)
    p.add_argument(
        "--jit",
        choices=("model", "sum", "none"),
        default="model",
        help="function run on every batch to count compilations",
    )
    p.add_argument("--cache-dir", default=str(ROOT / "runs" / "wbe_cache"))
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/wbe_epoch[_N])")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    return args


# ------------------------------------------------------------------ structures, cached


def _save_structures(path: Path, configs) -> None:
    """The fields of `Configuration`s the benchmark needs, as flat arrays in one npz."""
    has_stress = np.array([c.stress is not None for c in configs])
    arrays = dict(
        offsets=np.cumsum([0] + [c.n_atoms for c in configs]),
        atomic_numbers=np.concatenate([c.atomic_numbers for c in configs]).astype(np.int32),
        positions=np.concatenate([c.positions for c in configs]),
        forces=np.concatenate([c.forces if c.forces is not None else np.zeros((c.n_atoms, 3)) for c in configs]),
        cells=np.stack([c.cell for c in configs]),
        pbc=np.array([c.pbc for c in configs], dtype=bool),
        energy=np.array([np.nan if c.energy is None else c.energy for c in configs]),
        stress=np.stack([c.stress if c.stress is not None else np.zeros((3, 3)) for c in configs]),
        has_stress=has_stress,
        weights=np.array([[c.weight, c.energy_weight, c.forces_weight, c.stress_weight] for c in configs]),
        config_type=np.array([c.config_type for c in configs]),
    )
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: an interrupted run never leaves half a cache


def _load_structures(path: Path, source: str, limit: int | None):
    from jaxtl.graph import Configuration

    with np.load(path) as d:
        a = {k: d[k] for k in d.files}
    n = len(a["offsets"]) - 1 if limit is None else min(limit, len(a["offsets"]) - 1)
    off = a["offsets"]
    configs = []
    for i in range(n):
        s = slice(off[i], off[i + 1])
        w, ew, fw, sw = a["weights"][i]
        configs.append(
            Configuration(
                atomic_numbers=a["atomic_numbers"][s],
                positions=a["positions"][s],
                cell=a["cells"][i],
                pbc=tuple(bool(x) for x in a["pbc"][i]),
                energy=None if np.isnan(a["energy"][i]) else float(a["energy"][i]),
                forces=a["forces"][s],
                stress=a["stress"][i] if a["has_stress"][i] else None,
                weight=float(w),
                energy_weight=float(ew),
                forces_weight=float(fw),
                stress_weight=float(sw),
                config_type=str(a["config_type"][i]),
                source=source,
                index=i,
            )
        )
    return configs


def plain_copy(data: str, cache_dir: Path) -> str:
    """An uncompressed copy of an .xz file in cache_dir (ASE seeks in the file it reads,
    which on an xz stream means decompressing again from the start)."""
    if not data.endswith(".xz"):
        return data
    import lzma
    import shutil

    plain = cache_dir / Path(data).name[: -len(".xz")]
    if not plain.exists():
        tmp = plain.with_suffix(".tmp")
        with lzma.open(data, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
        os.replace(tmp, plain)
    return str(plain)


def structures(data: str, limit: int | None, cache_dir: Path) -> tuple[list, dict]:
    """(Configurations, {"read_s", "from_cache"}): the full cache, else a limit-N one, else ASE."""
    from jaxtl.graph import read_configurations

    cache_dir.mkdir(parents=True, exist_ok=True)
    full = cache_dir / "wbe-structures-all.npz"
    mine = full if limit is None else cache_dir / f"wbe-structures-{limit}.npz"
    t0 = time.perf_counter()
    cached = full if full.exists() else mine if mine.exists() else None
    if cached is not None:
        return _load_structures(cached, data, limit), {"read_s": time.perf_counter() - t0, "from_cache": str(cached)}
    # mlearn-style labels (energy= in the comment line) reach ASE's calculator; jaxtl falls
    # back to it. min_distance None: overlap checks are not what is measured here.
    index = ":" if limit is None else f":{limit}"
    configs = read_configurations(plain_copy(data, cache_dir), index=index, min_distance=None)
    read_s = time.perf_counter() - t0
    _save_structures(mine, configs)
    return configs, {"read_s": read_s, "from_cache": None}


# ------------------------------------------------------------------ the jitted function


def tiny_energy_fn(r_max: float, counter: Counter):
    """A jitted `graph -> energy [n_graphs]` of a tiny MACE (W, Be), counting traces."""
    import jax

    from jaxtl.model import MACE, MACEConfig, init_variables

    config = MACEConfig(
        atomic_numbers=(4, 74),
        r_max=r_max,
        hidden_irreps="8x0e",
        max_ell=1,
        correlation=(2, 2),
        radial_MLP=(8,),
        num_bessel=4,
        MLP_irreps="4x0e",
        avg_num_neighbors=(20.0, 20.0),
    )
    variables = jax.device_put(init_variables(config))
    model = MACE(config)

    def energy(graph):
        counter["energy"] += 1  # runs only while tracing: one per compilation
        return model.apply(variables, graph)["energy"]

    return jax.jit(energy)


def masked_sum_fn(counter: Counter):
    import jax
    import jax.numpy as jnp

    def total(graph):
        counter["sum"] += 1
        return jnp.sum(graph.positions * graph.node_mask[:, None]) + jnp.sum(graph.senders)

    return jax.jit(total)


def run_jit(epoch_batches, fn, counter: Counter) -> dict:
    """Run `fn` on every batch; first call per shape (compile) and the rest timed apart."""
    import jax

    seen: set = set()
    compile_s = run_s = 0.0
    for batch in epoch_batches:
        graph = batch.graph  # float32 already (batch_iterator's dtype)
        shape = (graph.positions.shape[0], graph.senders.shape[0], graph.cell.shape[0])
        t0 = time.perf_counter()
        jax.block_until_ready(fn(graph))
        dt = time.perf_counter() - t0
        if shape in seen:
            run_s += dt
        else:
            seen.add(shape)
            compile_s += dt
    return {
        "compilations": sum(counter.values()),
        "distinct_shapes_seen": len(seen),
        "first_calls_s": compile_s,
        "other_calls_s": run_s,
        "other_calls_ms_per_batch": 1e3 * run_s / max(len(epoch_batches) - len(seen), 1),
    }


# ------------------------------------------------------------------ report


def markdown(result: dict) -> str:
    m, ep = result["meta"], result["epoch"]
    w = ep["padding_waste"]
    lines = [
        f"# W-Be epoch: static shapes, compilations, padding ({m['n_structures']} structures)",
        "",
        f"{m['subset']}; batch size {m['batch_size']}, r_max {m['r_max']} A, seed {m['seed']}, epoch {m['epoch']}; "
        f"{m['hardware']}; load average at end {m['load_average_at_end'][0]:.1f}; jax {m['versions']['jax']}; "
        f"{m['date']}; jaxtl commit `{m.get('jaxtl_commit', 'not recorded')}`.",
        "",
        f"- structures: {m['n_structures']}, atoms per structure {ep['atoms_min']}-{ep['atoms_max']} "
        f"(mean {ep['atoms_mean']:.1f}), edges per structure {ep['edges_min']}-{ep['edges_max']} "
        f"(mean {ep['edges_mean']:.1f})",
        f"- batches in the epoch: {ep['n_batches']}; distinct padded shapes (= compilations of a "
        f"shape-specialised jit): **{ep['n_shapes']}**",
        f"- padding waste over the epoch: nodes **{100 * w['nodes']:.1f} %**, edges **{100 * w['edges']:.1f} %**, "
        f"graphs {100 * w['graphs']:.1f} %",
        f"- time: read {m['read_s']:.1f} s ({'npz cache' if m['from_cache'] else 'ASE, then cached'}), "
        f"neighbour lists {m['neighbours_s']:.1f} s, plan {ep['plan_s'] * 1e3:.1f} ms, pad every batch "
        f"{ep['pad_s']:.2f} s ({ep['pad_ms_per_batch']:.2f} ms a batch)",
    ]
    if result.get("jit"):
        j = result["jit"]
        lines.append(
            f"- jitted `{j['function']}` on every batch: **{j['compilations']} compilations** "
            f"({j['distinct_shapes_seen']} distinct shapes met); first calls {j['first_calls_s']:.1f} s, "
            f"the other {ep['n_batches'] - j['distinct_shapes_seen']} calls {j['other_calls_s']:.1f} s "
            f"({j['other_calls_ms_per_batch']:.1f} ms a batch)"
        )
    lines += [
        "",
        "| n_node | n_edge | n_graph | batches | node waste | edge waste |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for s in ep["shapes"]:
        lines.append(
            f"| {s['n_node']} | {s['n_edge']} | {s['n_graph']} | {s['batches']} | "
            f"{100 * s['node_waste']:.1f} % | {100 * s['edge_waste']:.1f} % |"
        )
    lines += ["", f"Command: `{m['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data is None:
        from _data import data_path

        args.data = str(data_path("wbe"))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jaxtl.graph import GraphDataset, batch_iterator, choose_budgets

    cache_dir = Path(args.cache_dir)
    configs, read_info = structures(args.data, args.limit, cache_dir)
    print(
        f"[wbe] {len(configs)} structures in {read_info['read_s']:.1f} s "
        f"({'cache ' + read_info['from_cache'] if read_info['from_cache'] else 'ASE'})",
        flush=True,
    )

    t0 = time.perf_counter()
    dataset = GraphDataset(configs, args.r_max, cache_dir=cache_dir, progress=False)
    neighbours_s = time.perf_counter() - t0
    print(f"[wbe] neighbour lists in {neighbours_s:.1f} s; {int(dataset.n_edges.sum())} edges", flush=True)

    t0 = time.perf_counter()
    budgets = choose_budgets(dataset, args.batch_size)
    epoch = batch_iterator(
        dataset, args.batch_size, budgets, shuffle=True, seed=args.seed, epoch=args.epoch, dtype=np.float32
    )
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_padded = sum(1 for _ in epoch)
    pad_s = time.perf_counter() - t0

    per_shape = {}
    for budget, members in epoch.plan:
        row = per_shape.setdefault(budget, {"batches": 0, "nodes": 0, "edges": 0})
        row["batches"] += 1
        row["nodes"] += int(dataset.n_nodes[members].sum())
        row["edges"] += int(dataset.n_edges[members].sum())
    shapes = [
        {
            "n_node": b.n_node,
            "n_edge": b.n_edge,
            "n_graph": b.n_graph,
            "batches": r["batches"],
            "node_waste": 1 - r["nodes"] / (r["batches"] * b.n_node),
            "edge_waste": 1 - r["edges"] / (r["batches"] * b.n_edge),
        }
        for b, r in sorted(per_shape.items())
    ]
    ep = {
        "n_batches": len(epoch),
        "n_shapes": len(epoch.shapes),
        "shapes": shapes,
        "padding_waste": epoch.padding_waste,
        "main_budget": budgets.main._asdict(),
        "plan_s": plan_s,
        "pad_s": pad_s,
        "pad_ms_per_batch": 1e3 * pad_s / max(n_padded, 1),
        "atoms_min": int(dataset.n_nodes.min()),
        "atoms_max": int(dataset.n_nodes.max()),
        "atoms_mean": float(dataset.n_nodes.mean()),
        "edges_min": int(dataset.n_edges.min()),
        "edges_max": int(dataset.n_edges.max()),
        "edges_mean": float(dataset.n_edges.mean()),
    }
    print(
        f"[wbe] {len(epoch)} batches, {len(epoch.shapes)} shapes, waste {epoch.padding_waste}, "
        f"plan {plan_s:.2f} s, pad {pad_s:.2f} s",
        flush=True,
    )

    jit = None
    if args.jit != "none":
        counter: Counter = Counter()
        fn = tiny_energy_fn(args.r_max, counter) if args.jit == "model" else masked_sum_fn(counter)
        jit = {"function": "tiny MACE energy" if args.jit == "model" else "masked sum", **run_jit(epoch, fn, counter)}
        print(f"[wbe] jit: {jit}", flush=True)

    subset = (
        f"first {len(configs)} structures of {Path(args.data).name}" if args.limit else f"all of {Path(args.data).name}"
    )
    meta = {
        "data": harness.relative_paths(args.data),
        "subset": subset,
        "n_structures": len(configs),
        "limit": args.limit,
        "batch_size": args.batch_size,
        "r_max": args.r_max,
        "seed": args.seed,
        "epoch": args.epoch,
        "read_s": read_info["read_s"],
        "from_cache": harness.relative_paths(read_info["from_cache"]),
        "neighbours_s": neighbours_s,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "versions": harness.library_versions(),
        "jaxtl_commit": harness.jaxtl_commit(),
        "load_average_at_end": os.getloadavg(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_wbe_epoch.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    result = {"meta": meta, "epoch": ep, "jit": jit}
    default = "wbe_epoch" if args.limit is None else f"wbe_epoch_{args.limit}"
    stem = Path(args.out) if args.out else RESULTS / default
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    stem.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
