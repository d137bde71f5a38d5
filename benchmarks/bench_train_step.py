"""Training steps per second: jaxtl's jitted train step against mace-torch's own, one process.

Model: a small single-element (Si) MACE built by mace-torch (ScaleShiftMACE,
Residual/Residual interactions, max_ell 3, correlation 3, r_max 5, 8 Bessel functions,
radial MLP [64, 64, 64], MLP_irreps 16x0e; hidden irreps from `--hidden`, default
32x0e and 64x0e+64x1o), randomly initialised and perturbed as in
tests/convert/torch_models.py, converted in memory with `from_torch_module`, so both
codes start from the same weights. Data: the first `--structures` frames of mlearn's
Si_train.extxyz (63 atoms each), one batch.

The two steps, as each code runs them in training:

  * mace-torch: `mace.tools.train.take_step` itself (what `train_one_epoch` calls per
    batch): zero_grad, `model(batch.to_dict(), training=True, compute_force=True)`,
    `WeightedEnergyForcesLoss(energy_weight=1, forces_weight=100)`, backward,
    `clip_grad_norm_(10)`, `torch.optim.Adam(amsgrad=True)` over mace's parameter groups
    (`get_params_options`: lr 0.01, weight decay 5e-7 on interaction linears and
    products), loss to the host. The batch comes from mace's data pipeline (built once).
  * jaxtl: `jaxtl.train.step.make_train_step` as `jaxtl.train.loop.train` builds it
    (weighted loss, `make_optimizer` with the same Adam/AMSGrad, clipping and decay
    groups, one-device mesh), on the padded batch `jaxtl.graph.batch_iterator` makes
    of the same structures; timed is one step plus `float(stats["loss"])`, as the loop
    reads it.

Per (hidden irreps, dtype): jaxtl's first step (trace + XLA compile + run) apart, then
the median of `--repeats` steps after `--warmup` untimed ones, the two codes' steps
alternating (robust to other processes' load), steps/s, the ratio torch / jaxtl (> 1:
jaxtl is faster), jaxtl's number of compilations (1 expected) and, as a check that the
two steps compute the same thing, the losses of both codes at the first and last step
(identical weights, data, loss and optimiser: the sequences agree to round-off).

Where mace-torch runs (`--torch-process`):

  * `same` (default): in this process, which the script restarts with jaxtl's glibc
    tunables (jaxtl/_allocator.py). mace-torch profits from them too: on the 2-core CPU
    its 64x0e+64x1o float64 step took 1.7 s with them and 3.2 s without.
  * `own`: in a child process started with the environment this script was started with
    (jaxtl's tunables taken out), stepped in strict alternation with jaxtl's steps over a
    pipe: each code as its own command runs it (`jaxtl train` restarts with the tunables,
    `mace_run_train` does not). The child builds the same model and loads the same weights;
    its steps are timed here, pipe round trip included (well under a millisecond).

Writes `benchmarks/results/train_step_<device>.json` and `.md` (or `--out STEM`).

    python benchmarks/bench_train_step.py                          # CPU, both models, both dtypes
    python benchmarks/bench_train_step.py --hidden 32x0e --dtypes float32 --repeats 5
    python benchmarks/bench_train_step.py --device gpu --repeats 10  # falls back to CPU if none
    python benchmarks/bench_train_step.py --torch-process own        # mace-torch with glibc's defaults
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import ChildSide, load_state, state_arrays  # noqa: E402
from _harness import (  # noqa: E402
    RESULTS,
    ROOT,
    interleaved,
    relative_paths,
    resolve_device,
    run_metadata,
    write_results,
)

DTYPES = ("float32", "float64")
LR, WEIGHT_DECAY, CLIP, ENERGY_WEIGHT, FORCES_WEIGHT = 0.01, 5e-7, 10.0, 1.0, 100.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", default="32x0e,64x0e+64x1o", help="comma list of hidden irreps")
    p.add_argument("--dtypes", default="float32,float64", help="comma list of: float32, float64")
    p.add_argument("--structures", type=int, default=5, help="structures in the batch")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per code (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing (first included)")
    p.add_argument(
        "--block",
        type=int,
        default=1,
        help="consecutive steps per code per turn (default 1: strict alternation). On this "
        "2-core VM a jaxtl step right after a mace-torch step often pays for the kernel "
        "re-zeroing and compacting memory torch released; a block shows the steady state",
    )
    p.add_argument(
        "--torch-process",
        choices=("same", "own"),
        default="same",
        help="mace-torch in this process (with jaxtl's glibc tunables) or in a child process "
        "with the environment the script was started with (see the module docstring)",
    )
    p.add_argument("--ema", action="store_true", help="keep an EMA of the weights (mace --ema, decay 0.99)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--backends", default="xla", help="comma list of jaxtl backends, timed side by side: xla, cueq (cuEquivariance)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument(
        "--matmul-precision",
        default="highest",
        choices=("default", "high", "highest"),
        help="jax float32 matmul precision on GPU ('highest' = full fp32, as torch)",
    )
    p.add_argument(
        "--data", default=None, help="extended XYZ file of Si structures (default: jaxtl.datasets' mlearn-Si-train)"
    )
    p.add_argument("--out", default=None, help="output stem (default benchmarks/results/train_step_<device>)")
    args = p.parse_args(argv)
    if args.data is None:
        from _data import data_path

        args.data = str(data_path("mlearn-Si-train"))
    args.hidden = [h.strip() for h in args.hidden.split(",") if h.strip()]
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if [d for d in args.dtypes if d not in DTYPES]:
        p.error(f"dtypes must be among {list(DTYPES)}")
    if args.repeats < 1 or args.structures < 1 or args.block < 1:
        p.error("--repeats, --structures and --block must be >= 1")
    return args


def torch_models():
    """tests/convert/torch_models.py, loaded by path (a package called `tests` may shadow it)."""
    path = ROOT / "tests" / "convert" / "torch_models.py"
    spec = importlib.util.spec_from_file_location("jaxtl_bench_torch_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_structures(path: str, n: int):
    """The first n frames as ASE atoms, labels also under mace's REF_energy / REF_forces."""
    import ase.io

    frames = ase.io.read(path, index=f":{n}")
    for atoms in frames:
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
    return frames


def build_torch_model(hidden: str, avg_num_neighbors: float):
    """A float64 mace-torch ScaleShiftMACE for Si (random weights, perturbed)."""
    model = torch_models()._build(
        seed=0,
        atomic_numbers=[14],
        r_max=5.0,
        num_bessel=8,
        max_ell=3,
        correlation=3,
        interaction_first="RealAgnosticResidualInteractionBlock",
        interaction="RealAgnosticResidualInteractionBlock",
        hidden_irreps=hidden,
        MLP_irreps="16x0e",
        radial_MLP=[64, 64, 64],
        avg_num_neighbors=avg_num_neighbors,
        scale=0.6,
        shift=-0.1,
    )
    return model


class TorchTrainer:
    """mace-torch's per-batch training step (`take_step`) on one batch from mace's pipeline."""

    def __init__(self, model, frames, dtype: str, device: str, ema: bool):
        import copy

        import torch
        from mace import data as mace_data
        from mace.modules.loss import WeightedEnergyForcesLoss
        from mace.tools import torch_geometric, torch_tools
        from mace.tools.scripts_utils import get_params_options
        from mace.tools.utils import AtomicNumberTable

        self.torch = torch
        self.dtype = dtype
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        model = copy.deepcopy(model)
        model = model.double() if dtype == "float64" else model.float()
        self.model = model.to(self.device).train()
        z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
        keys = mace_data.KeySpecification(info_keys={"energy": "REF_energy"}, arrays_keys={"forces": "REF_forces"})
        with torch_tools.default_dtype(dtype):
            data = [
                mace_data.AtomicData.from_config(
                    mace_data.config_from_atoms(atoms, key_specification=keys),
                    z_table=z_table,
                    cutoff=float(model.r_max),
                    heads=["Default"],
                )
                for atoms in frames
            ]
            self.batch = torch_geometric.Batch.from_data_list(data).to(self.device)
        self.n_edges = int(self.batch.edge_index.shape[1])
        self.n_parameters = int(sum(p.numel() for p in self.model.parameters()))
        self.loss_fn = WeightedEnergyForcesLoss(energy_weight=ENERGY_WEIGHT, forces_weight=FORCES_WEIGHT)
        options = get_params_options(
            types.SimpleNamespace(
                lr=LR, amsgrad=True, beta=0.9, weight_decay=WEIGHT_DECAY, lr_params_factors="{}", freeze=0
            ),
            self.model,
        )
        self.optimizer = torch.optim.Adam(**options)
        self.ema = None
        if ema:
            from torch_ema import ExponentialMovingAverage

            self.ema = ExponentialMovingAverage(self.model.parameters(), decay=0.99)
        self.losses: list[float] = []

    def __call__(self) -> float:
        from mace.tools import torch_tools
        from mace.tools.train import take_step

        with torch_tools.default_dtype(self.dtype):
            loss, _ = take_step(
                self.model,
                self.loss_fn,
                self.batch,
                self.optimizer,
                self.ema,
                output_args={"forces": True, "virials": False, "stress": False},
                max_grad_norm=CLIP,
                device=self.device,
            )
        self.losses.append(float(loss.detach()))  # take_step already brought it to the host
        return self.losses[-1]

    @staticmethod
    def sync(out):
        return out


def _torch_trainer(hidden, avg_num_neighbors, state, frames, dtype, device, ema) -> TorchTrainer:
    """The mace-torch trainer built in `ChildSide`'s child (`--torch-process own`), same weights."""
    model = load_state(build_torch_model(hidden, avg_num_neighbors), state)
    return TorchTrainer(model, frames, dtype, device, ema)


class JaxTrainer:
    """jaxtl's jitted train step, built as `jaxtl.train.loop.train` builds it."""

    def __init__(self, config, variables, frames, dtype: str, ema: bool, backend: str = "xla"):
        import jax
        import jax.numpy as jnp
        import numpy as np
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from jaxtl.finetune.finetune import mace_decay_filter
        from jaxtl.graph import GraphDataset, batch_iterator, configuration_from_atoms
        from jaxtl.model import MACE, make_predict
        from jaxtl.train.loop import _cast
        from jaxtl.train.loss import LossConfig
        from jaxtl.train.optimizer import OptimizerConfig, make_optimizer
        from jaxtl.train.parallel import group_batches, make_mesh
        from jaxtl.train.step import TrainState, make_train_step

        np_dtype = np.dtype(dtype)
        config = config.replace(dtype=dtype)
        configs = [
            configuration_from_atoms(atoms, source="<benchmark frames>", index=i) for i, atoms in enumerate(frames)
        ]
        dataset = GraphDataset(configs, config.r_max, progress=False)
        epoch = batch_iterator(dataset, batch_size=len(configs), shuffle=False, dtype=np_dtype)
        if len(epoch) != 1:
            raise RuntimeError(f"expected one batch of {len(configs)} structures, got {len(epoch)}")
        ((_, stacked, _),) = group_batches(list(epoch), 1, np_dtype)
        self.padded = epoch.shapes[0]
        self.padding_waste = epoch.padding_waste

        loss_cfg = LossConfig(energy_weight=ENERGY_WEIGHT, forces_weight=FORCES_WEIGHT)
        optimizer = make_optimizer(
            OptimizerConfig(lr=LR, amsgrad=True, weight_decay=WEIGHT_DECAY, clip_grad=CLIP),
            decay_filter=mace_decay_filter,
        )
        mesh = make_mesh(1)
        self.step_fn, self.compiles = make_train_step(
            make_predict(MACE(config, backend)),
            loss_cfg.loss,
            loss_cfg.huber_delta,
            False,
            optimizer,
            0.99 if ema else None,
            mesh,
        )
        variables = _cast(variables, np_dtype)
        params = variables["params"]
        from jaxtl.train.ema import ema_init

        state = TrainState(jnp.zeros([], jnp.int32), params, optimizer.init(params), ema_init(params) if ema else None)
        replicated = NamedSharding(mesh, P())
        self.state, self.constants = jax.device_put((state, variables["constants"]), replicated)
        self.batch = jax.device_put(stacked)
        self.lr = jnp.asarray(LR, np_dtype)
        self.weights = {k: jnp.asarray(v, np_dtype) for k, v in loss_cfg.weights().items()}
        self.losses: list[float] = []

    def __call__(self) -> float:
        self.state, stats = self.step_fn(self.state, self.constants, self.batch, self.lr, self.weights)
        self.losses.append(float(stats["loss"]))  # the loop's own host sync
        return self.losses[-1]

    @staticmethod
    def sync(out):
        return out


def run_case(hidden, dtype, torch_model, jax_cv, frames, args, device) -> list[dict]:
    """One row per jaxtl backend; all backends and mace-torch alternate in one loop."""
    import jax

    # x64 only for float64 cases: a float32 run is then what `jaxtl train` runs by default.
    jax.config.update("jax_enable_x64", dtype == "float64")
    t0 = time.perf_counter()
    jsides = [JaxTrainer(*jax_cv, frames, dtype, args.ema, backend) for backend in args.backends]
    if args.torch_process == "own":
        tside = ChildSide(
            _torch_trainer,
            (
                hidden,
                float(torch_model.interactions[0].avg_num_neighbors),
                state_arrays(torch_model),
                frames,
                dtype,
                device,
                args.ema,
            ),
            threads=args.threads,
        )
    else:
        tside = TorchTrainer(torch_model, frames, dtype, device, args.ema)
    setup_s = time.perf_counter() - t0

    firsts, times = interleaved([*jsides, tside], args.repeats, args.warmup, block=args.block)
    if args.torch_process == "own":
        tside.close()
        tside.losses = tside.returned  # the loss of every step, as TorchTrainer keeps them
    t_first, t_times = firsts[-1], times[-1]
    t_med = statistics.median(t_times)
    n_atoms = sum(len(a) for a in frames)
    rel = lambda a, b: abs(a - b) / max(abs(b), 1e-30)
    rows = []
    for backend, jside, j_first, j_times in zip(args.backends, jsides, firsts, times):
        j_med = statistics.median(j_times)
        row = {
            "hidden_irreps": hidden,
            "dtype": dtype,
            "backend": backend,
            "device": device,
            "n_structures": len(frames),
            "n_atoms": n_atoms,
            "n_edges": tside.n_edges,
            "padded": {"n_node": jside.padded.n_node, "n_edge": jside.padded.n_edge, "n_graph": jside.padded.n_graph},
            "padding_waste": jside.padding_waste,
            "n_parameters": tside.n_parameters,
            "torch_process": args.torch_process,
            "torch_glibc_tunables": getattr(tside, "glibc_tunables", os.environ.get("GLIBC_TUNABLES", "")),
            "torch_jaxtl_heap_settings": getattr(tside, "jaxtl_heap_settings", True),
            "setup_s": setup_s,
            "jaxtl_first_step_s": j_first,
            "jaxtl_compilations": dict(jside.compiles),
            "jaxtl_median_ms": 1e3 * j_med,
            "jaxtl_times_ms": [1e3 * t for t in j_times],
            "jaxtl_steps_per_s": 1.0 / j_med,
            "torch_first_step_s": t_first,
            "torch_median_ms": 1e3 * t_med,
            "torch_times_ms": [1e3 * t for t in t_times],
            "torch_steps_per_s": 1.0 / t_med,
            "ratio_torch_over_jaxtl": t_med / j_med,
            "jaxtl_losses": jside.losses,
            "torch_losses": tside.losses,
            "loss_rel_diff_first": rel(jside.losses[0], tside.losses[0]),
            "loss_rel_diff_last": rel(jside.losses[-1], tside.losses[-1]),
        }
        print(
            f"[bench] {hidden:12s} {dtype} {backend:4s}: jaxtl {row['jaxtl_median_ms']:8.1f} ms "
            f"(first step {j_first:5.1f} s) | mace-torch {row['torch_median_ms']:8.1f} ms | "
            f"torch/jaxtl {row['ratio_torch_over_jaxtl']:5.2f} | loss rel. diff first "
            f"{row['loss_rel_diff_first']:.1e} last {row['loss_rel_diff_last']:.1e}",
            flush=True,
        )
        rows.append(row)
    return rows


def markdown(rows, meta) -> str:
    r0 = rows[0] if rows else {}
    lines = [
        f"# Training step, jaxtl vs mace-torch ({meta['device']})",
        "",
        f"Batch of {meta['n_structures']} mlearn Si structures ({r0.get('n_atoms')} atoms, "
        f"{r0.get('n_edges')} edges within 5 A; jaxtl pads to {r0.get('padded', {}).get('n_node')} nodes / "
        f"{r0.get('padded', {}).get('n_edge')} edges); weighted energy/forces loss (1, 100), Adam AMSGrad "
        f"lr {LR}, clip {CLIP}{', EMA 0.99' if meta['ema'] else ''}; median of {meta['repeats']} steps after "
        f"{meta['warmup']} warm-up step(s), "
        + (
            "steps alternating jaxtl / torch"
            if meta.get("block", 1) == 1
            else f"blocks of {meta['block']} consecutive steps alternating jaxtl / torch"
        )
        + (
            "; mace-torch in a process of its own with "
            f"`GLIBC_TUNABLES={r0.get('torch_glibc_tunables', '') or '(unset)'}`"
            if meta.get("torch_process") == "own"
            else "; both codes in this process"
        )
        + f"; {meta['hardware']}; torch threads "
        f"{meta['torch_threads']}; load average at end {meta['load_average_at_end'][0]:.1f}; "
        f"jax {meta['versions']['jax']}, torch {meta['versions']['torch']}, mace-torch "
        f"{meta['versions']['mace']}; {meta['date']}.",
        "",
        "| hidden irreps | dtype | backend | params | jaxtl ms/step | mace-torch ms/step | torch/jaxtl | "
        "jaxtl steps/s | mace-torch steps/s | jaxtl first step s | compiles | loss rel. diff first / last |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['hidden_irreps']} | {r['dtype']} | {r.get('backend', 'xla')} | {r['n_parameters']} | "
            f"{r['jaxtl_median_ms']:.1f} | "
            f"{r['torch_median_ms']:.1f} | {r['ratio_torch_over_jaxtl']:.2f} | {r['jaxtl_steps_per_s']:.2f} | "
            f"{r['torch_steps_per_s']:.2f} | {r['jaxtl_first_step_s']:.1f} | "
            f"{r['jaxtl_compilations'].get('train', 0)} | "
            f"{r['loss_rel_diff_first']:.0e} / {r['loss_rel_diff_last']:.0e} |"
        )
    lines += ["", f"Command: `{meta['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)

    import mace  # noqa: F401  (must precede e3nn)
    import torch

    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    import jax

    jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    from jaxtl.convert.convert import from_torch_module

    if device == "gpu":
        hardware = f"{torch.cuda.get_device_name(0)}; jax {jax.devices()[0].device_kind}"
    else:
        hardware = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    frames = read_structures(args.data, args.structures)
    from jaxtl.graph import GraphDataset, configuration_from_atoms
    from jaxtl.train.data import average_num_neighbors

    # mace's avg_num_neighbors from the batch itself; speed hardly depends on it.
    configs = [configuration_from_atoms(atoms, source=args.data, index=i) for i, atoms in enumerate(frames)]
    avg_num_neighbors = average_num_neighbors(GraphDataset(configs, 5.0, progress=False))
    print(
        f"[bench] device {device} ({hardware}); {len(frames)} structures, "
        f"{sum(len(a) for a in frames)} atoms; jax devices {jax.devices()}",
        flush=True,
    )

    rows = []
    for hidden in args.hidden:
        t0 = time.perf_counter()
        torch_model = build_torch_model(hidden, avg_num_neighbors)
        jax_cv = from_torch_module(torch_model)
        print(f"[bench] built {hidden} (torch + conversion) in {time.perf_counter() - t0:.1f} s", flush=True)
        for dtype in args.dtypes:
            rows += run_case(hidden, dtype, torch_model, jax_cv, frames, args, device)

    meta = {
        "device": device,
        "requested_device": args.device,
        "hardware": hardware,
        "data": relative_paths(args.data),
        "n_structures": len(frames),
        "avg_num_neighbors": avg_num_neighbors,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "ema": args.ema,
        "block": args.block,
        "torch_process": args.torch_process,
        "optimizer": {"lr": LR, "amsgrad": True, "weight_decay": WEIGHT_DECAY, "clip_grad": CLIP},
        "loss": {"energy_weight": ENERGY_WEIGHT, "forces_weight": FORCES_WEIGHT},
        "torch_threads": threads,
        "jax_matmul_precision": args.matmul_precision,
        "load_average_at_end": os.getloadavg(),
        **run_metadata("bench_train_step.py", argv),
    }
    stem = Path(args.out) if args.out else RESULTS / f"train_step_{device}"
    write_results(stem, meta, rows, markdown)
    return 0


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    sys.exit(main())
