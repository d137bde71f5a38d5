"""Where one training step of bench_train_step.py spends its time: by pass, by part, and on the host.

The training step is loss -> gradient with respect to the parameters of a loss that holds
the forces, so it differentiates through the forces' backward pass. The optimised HLO of
the compiled step names each instruction's JAX name stack, which tells the passes apart:

  * `energy forward`       jvp(jvp(MACE)): the model's forward pass;
  * `forces backward`      jvp(transpose(jvp(MACE))): dE/dr, the forces;
  * `param grad of forces` transpose(jvp(transpose(jvp(MACE)))): the parameter gradient
                           back through the forces' backward pass (second order);
  * `param grad of energy` transpose(jvp(jvp(MACE))): the parameter gradient back through
                           the forward pass;
  * `loss` (the rest of jvp()/transpose(jvp()) outside the model) and `optimizer` (clipping,
    AMSGrad, weight decay, update: outside any jvp).

`jax.profiler` records XLA:CPU's thunk time of each instruction over `--calls` steps
(create_perfetto_trace=True; the json.gz events are matched to the HLO by name), of which
the fastest run of each instruction is kept (pre-emption by other processes only adds); each
instruction is put in its pass and in a part of benchmarks/dev/profile_parts.py (radial MLP,
slot products, neighbour sums, CG coupling, linear maps, gathers, symmetric contraction).
The thunk executor runs independent instructions on both cores at once, so thunk times add
up to more than the step's wall time. Beside each pass and part: its bytes (operands + output
of its instructions, an upper bound on memory traffic as XLA's cost analysis counts it) and
dot FLOPs, read from the compiled program, so they do not move with the machine's load.

Also printed: XLA's cost analysis of the whole step; the wall and process CPU time of the
step as `jaxtl.train.loop` calls it (step on a host batch, `lr` made on the host, then
`int(step)`, `float(loss)` and the loss terms to the host) against the compiled call alone
on a device batch; the host work of making a step's batch (padding and stacking the
structures, `batch_iterator` + `group_batches`); the optimiser alone as its own jitted
program; and the number of compilations. On a machine shared with other processes the
process CPU time (both cores' work) is the steadier figure.

    python benchmarks/dev/profile_train_step.py --hidden 32x0e --dtype float32 --calls 5
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/dev/
import bench_train_step as bench  # noqa: E402
from profile_parts import entry_instructions, part_of  # noqa: E402

PASSES = (
    ("transpose(jvp(transpose(jvp(", "param grad of forces"),
    ("transpose(jvp(jvp(", "param grad of energy"),
    ("jvp(transpose(jvp(", "forces backward"),
    ("jvp(jvp(", "energy forward"),
)


def pass_of(stack: str) -> str:
    """The pass (see the module docstring) of an instruction with JAX name stack `stack`."""
    inner = stack.split("/", 1)[1] if stack.startswith("jit(") else stack
    if "MACE" in inner or "_edges" in inner:
        for prefix, name in PASSES:
            if inner.startswith(prefix):
                return name
        return "model, other"
    if inner.startswith(("jvp(", "transpose(")):
        return "loss"
    return "optimizer" if stack.startswith("jit(") else "parameters / arguments"


def thunk_times(trace_dir: str, names: set, calls: int) -> collections.Counter:
    """Seconds per step of each instruction name in the trace: the fastest of its `calls`
    runs (each entry instruction runs once a step). On a loaded machine a thunk that
    another process pre-empts takes many times its own time; the fastest run does not."""
    path = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    data = json.load(gzip.open(path))
    events = data["traceEvents"] if isinstance(data, dict) else data
    runs = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            runs[e["name"]].append(e.get("dur", 0) * 1e-6)
    return collections.Counter({name: min(d) for name, d in runs.items() if len(d) >= calls})


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median wall s, median process CPU s) of `fn()` over `repeats` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def optimizer_alone(side):
    """The optimiser update of the step as its own jitted program, on gradients shaped as the params."""
    import jax
    import optax

    from jaxtl.finetune.finetune import mace_decay_filter
    from jaxtl.train.optimizer import OptimizerConfig, make_optimizer

    opt = make_optimizer(
        OptimizerConfig(lr=bench.LR, amsgrad=True, weight_decay=bench.WEIGHT_DECAY, clip_grad=bench.CLIP),
        decay_filter=mace_decay_filter,
    )

    @jax.jit
    def update(params, opt_state, grads, lr):
        updates, opt_state = opt.update(grads, opt_state, params, learning_rate=lr)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = side.state.params, side.state.opt_state
    grads = jax.tree.map(lambda p: 1e-3 * p, params)
    jax.block_until_ready(update(params, opt_state, grads, side.lr))
    return lambda: jax.block_until_ready(update(params, opt_state, grads, side.lr))


def loop_step(side):
    """The step as `jaxtl.train.loop` makes it: a host batch, the lr made on the host, and
    the step number, the loss and the loss terms brought to the host afterwards."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    host_batch = jax.tree.map(np.asarray, side.batch)
    state = side.state

    def call():
        lr = jnp.asarray(bench.LR, side.lr.dtype)
        new, stats = side.step_fn(state, side.constants, host_batch, lr, side.weights)
        int(new.step), float(stats["loss"])
        [(float(s), float(c)) for s, c in stats["terms"].values()]

    return call


def host_batching(frames, dtype: str):
    """The host work of one step's batch: pad and stack the structures as the loop does."""
    import numpy as np

    from jaxtl.graph import GraphDataset, batch_iterator, configuration_from_atoms
    from jaxtl.train.parallel import group_batches

    configs = [configuration_from_atoms(a, source="<profile frames>", index=i) for i, a in enumerate(frames)]
    dataset = GraphDataset(configs, 5.0, progress=False)

    def call():
        epoch = batch_iterator(dataset, batch_size=len(configs), shuffle=False, dtype=np.dtype(dtype))
        return list(group_batches(list(epoch), 1, np.dtype(dtype)))

    return call


def by_pass_and_part(instructions: dict, times: collections.Counter, n_slots: int, n_edges: int):
    """{pass: [s, instr, bytes, flops]} and {(pass, block, part): [s, instr, bytes, flops]}."""
    by_pass = collections.defaultdict(lambda: [0.0, 0, 0, 0])
    by_part = collections.defaultdict(lambda: [0.0, 0, 0, 0])
    for name, ins in instructions.items():
        row = (times.get(name, 0.0), 1, ins["in"] + ins["out"], ins["flops"])
        which = pass_of(ins["stack"])
        keys = [(by_pass, which)]
        if which.startswith(("energy", "forces", "param")):
            block, _, what = part_of(ins, n_slots, n_edges)
            keys.append((by_part, (which, block, what)))
        for table, key in keys:
            table[key] = [a + b for a, b in zip(table[key], row)]
    return by_pass, by_part


def print_tables(by_pass, by_part, instructions, times, top: int) -> None:
    total = sum(v[0] for v in by_pass.values()) or 1.0
    total_bytes = sum(v[2] for v in by_pass.values()) or 1
    print("| pass | instr | thunk ms | % time | MB | % bytes | GFLOP |\n|---|---:|---:|---:|---:|---:|---:|")
    for which, (s, n, b, f) in sorted(by_pass.items(), key=lambda kv: -kv[1][0]):
        print(
            f"| {which} | {n} | {1e3 * s:.2f} | {100 * s / total:.1f} | {b / 1e6:.1f} | "
            f"{100 * b / total_bytes:.1f} | {f / 1e9:.3f} |"
        )
    print("\n| pass | block | part | instr | thunk ms | % time | MB | GFLOP |\n|---|---|---|---:|---:|---:|---:|---:|")
    for (which, block, what), (s, n, b, f) in sorted(by_part.items(), key=lambda kv: -kv[1][0]):
        if s >= 0.005 * total:
            print(
                f"| {which} | {block} | {what} | {n} | {1e3 * s:.2f} | {100 * s / total:.1f} | {b / 1e6:.1f} | "
                f"{f / 1e9:.3f} |"
            )
    print(f"\nslowest {top} instructions:")
    for name in sorted(times, key=lambda n: -times[n])[:top]:
        ins = instructions[name]
        print(
            f"  {1e3 * times[name]:7.2f} ms  {name}  {ins['op']} {ins['dims']}  "
            f"{(ins['in'] + ins['out']) / 1e6:.1f} MB  {ins['stack'][:120]}"
        )


def build(args):
    """(trainer, compiled step, its instructions, slots, padded edges, frames)."""
    from _data import data_path

    from jaxtl.convert.convert import from_torch_module

    frames = bench.read_structures(str(data_path("mlearn-Si-train")), args.structures)
    side = bench.JaxTrainer(*from_torch_module(bench.build_torch_model(args.hidden, 10.0)), frames, args.dtype, False)
    compiled = side.step_fn.lower(side.state, side.constants, side.batch, side.lr, side.weights).compile()
    instructions = entry_instructions(compiled.as_text())
    for name, ins in instructions.items():
        ins["name"] = name
    graph = side.batch.graph
    n_slots = int(graph.neighbours[0].size) if graph.neighbours is not None else -1
    return side, compiled, instructions, n_slots, int(graph.senders.shape[-1]), frames


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", default="32x0e")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--structures", type=int, default=5)
    p.add_argument("--calls", type=int, default=5, help="profiled steps (after 3 untimed)")
    p.add_argument("--repeats", type=int, default=9, help="timed steps of each time figure (median)")
    p.add_argument("--top", type=int, default=20, help="also list the N slowest instructions")
    args = p.parse_args(argv)
    import jax
    import mace  # noqa: F401  (before e3nn)

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    jax.config.update("jax_default_matmul_precision", "highest")
    side, compiled, instructions, n_slots, n_edges, frames = build(args)
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    for _ in range(3):
        side()
    call_args = (side.state, side.constants, side.batch, side.lr, side.weights)
    load = os.getloadavg()[0]
    figures = {
        "step as the loop calls it": timed(loop_step(side), args.repeats),
        "compiled step alone (device batch)": timed(lambda: jax.block_until_ready(compiled(*call_args)), args.repeats),
        "host: pad + stack the batch": timed(host_batching(frames, args.dtype), args.repeats),
        "optimiser alone (own program)": timed(optimizer_alone(side), args.repeats),
    }
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        for _ in range(args.calls):
            side()
        jax.profiler.stop_trace()
        times = thunk_times(tmp, set(instructions), args.calls)
    print(
        f"{args.hidden} {args.dtype}, {args.structures} structures, {n_slots} slots, {n_edges} padded edges; "
        f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after; compilations {dict(side.compiles)}; "
        f"XLA cost analysis: {cost.get('flops', 0) / 1e9:.2f} GFLOP, {cost.get('bytes accessed', 0) / 1e9:.2f} GB "
        f"accessed, {cost.get('transcendentals', 0) / 1e6:.2f} M transcendentals; {len(instructions)} entry "
        "instructions\n"
    )
    print("| what | wall ms | process CPU ms |\n|---|---:|---:|")
    for what, (wall, cpu) in figures.items():
        print(f"| {what} | {1e3 * wall:.2f} | {1e3 * cpu:.2f} |")
    print(f"\nthunk ms per step: each instruction's fastest of {args.calls} profiled steps\n")
    by_pass, by_part = by_pass_and_part(instructions, times, n_slots, n_edges)
    print_tables(by_pass, by_part, instructions, times, args.top)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
