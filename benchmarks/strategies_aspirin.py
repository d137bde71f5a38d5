"""Every fine-tuning strategy side by side: accuracy on aspirin against forgetting.

Foundation: `spice-mace` of jaxtl.datasets (a small MACE trained on SPICE, wB97M),
converted once to float32. Target: rMD17 aspirin (PBE/def2-SVP); the training subsets
are nested draws from aspirin_train.extxyz, the test set a fixed draw of --n-test
structures from aspirin_test.extxyz. Strategies (`jaxtl.finetune.strategies`):

    naive        every weight trains (mace --freeze 0)
    freeze5/6    mace-torch's --freeze 5 / --freeze 6
    lora         rank --lora-rank adapters on every 2-D weight, the foundation frozen
    magnitude    a scale per irrep channel of the interaction/product `linear` blocks
    replay       + pseudolabelled structures (see below) with loss weight --replay-weight
    replay+lora  both

The replay set: --replay-size rattled copies (0.05 A) of the training structures and
one rattled copy (0.05 A) of each of the --replay-molecules H/C/N/O molecules of ASE's
G2 collection, all labelled by the frozen foundation. The 3BPA structures used to
measure forgetting are never in it.

Every run at a size gets the same optimisation-step budget (--steps, at least
--min-epochs epochs; a replay run has more structures per epoch, so fewer epochs),
the same schedule, learning rate and E0s (refitted, --e0s, default "average"). Recorded per run:
aspirin test errors; trained parameters and optimiser-state bytes; wall time; and
forgetting:
  3BPA   a fixed draw of --n-3bpa structures of 3BPA at 300 K (wB97X; contains N,
         which aspirin lacks): energy and force differences from the foundation's own
         predictions and errors against the DFT labels. Every 3BPA frame has one
         composition, so energies are compared with their mean offset removed
         (a per-element reference shift is a constant there).
  dimers C-C, C-H, O-H pairs in vacuum at 0.5-1.0 A: the RMS difference of the
         interaction energy (E - sum E0) from the foundation's, the mean offset of
         each curve removed (its shape, i.e. the repulsion, is compared).

    python benchmarks/strategies_aspirin.py --out runs/strategies          # the study
    python benchmarks/strategies_aspirin.py --out /tmp/s --fast            # tiny; run by the tests

Outputs: OUT/results.json, OUT/results.md (one table), OUT/strategies.png and
OUT/learning_curves.png. A rerun into the same OUT skips the runs already recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from finetune_aspirin import train_config, write_subset  # noqa: E402  (one schedule, one way to draw subsets)

STRATEGIES = ("naive", "freeze5", "freeze6", "lora", "magnitude", "replay", "replay+lora")
DIMERS = ("CC", "CH", "OH")


def strategy_config(name: str, args, replay_file: Path):
    """The `StrategyConfig` of a strategy of this study."""
    from jaxtl.finetune import StrategyConfig

    replay = dict(replay_size=args.replay_size, replay_weight=args.replay_weight, replay_files=(str(replay_file),))
    return StrategyConfig(
        **{
            "naive": dict(name="naive"),
            "freeze5": dict(name="freeze", freeze=5),
            "freeze6": dict(name="freeze", freeze=6),
            "lora": dict(name="lora", lora_rank=args.lora_rank),
            "magnitude": dict(name="magnitude"),
            "replay": dict(name="replay", **replay),
            "replay+lora": dict(name="replay+lora", lora_rank=args.lora_rank, **replay),
        }[name]
    )


def write_replay_molecules(path: Path, n: int, rattle: float, seed: int) -> int:
    """One rattled copy of each of the first n H/C/N/O molecules (>= 2 atoms) of ASE's G2 set."""
    import ase.io
    from ase.collections import g2

    names = [m for m in g2.names if set(g2[m].get_chemical_symbols()) <= set("HCNO") and len(g2[m]) > 1][:n]
    rng = np.random.default_rng([seed, 2])
    frames = []
    for name in names:
        atoms = g2[name]
        atoms.positions = atoms.positions + rng.normal(0.0, rattle, atoms.positions.shape)
        atoms.info = {"config_type": f"g2_{name}"}
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return len(frames)


def dimers(separations) -> list:
    import ase

    return [ase.Atoms(pair, positions=[[0.0, 0.0, 0.0], [d, 0.0, 0.0]]) for pair in DIMERS for d in separations]


def n_subset_for(n_train: int, valid_fraction: float = 0.1) -> int:
    """Structures to draw so that `finetune`'s held-out validation share leaves n_train to train on."""
    m = n_train + 1
    while m - max(1, int(round(valid_fraction * m))) < n_train:
        m += 1
    return m


class Evaluator:
    """Energies and forces of many models of one architecture on fixed structure sets.

    Every batch is padded to one shape, and one jitted predict takes each model's
    variables as an argument, so all models share a single compilation.
    """

    def __init__(self, foundation: Path, sets: dict, batch_size: int = 20):
        from jaxtl import load_model
        from jaxtl.graph.batching import graph_from_configuration, pad_to_capacity
        from jaxtl.graph.io import configuration_from_atoms

        self.model = load_model(foundation, dtype="float32")
        self.index = {int(z): k for k, z in enumerate(self.model.config.atomic_numbers)}
        r_max = float(self.model.config.r_max)
        self.numbers = {name: [np.asarray(a.numbers) for a in atoms] for name, atoms in sets.items()}
        chunks = {}
        for name, atoms in sets.items():
            items = [
                graph_from_configuration(
                    configuration_from_atoms(a, source=name, index=i, min_distance=None, read_labels=False), r_max
                )
                for i, a in enumerate(atoms)
            ]
            chunks[name] = [items[lo : lo + batch_size] for lo in range(0, len(items), batch_size)]
        budget = None
        for parts in chunks.values():
            for part in parts:
                _, budget = pad_to_capacity(part, r_max, at_least=budget)
        self.batches = {
            name: [
                (len(part), pad_to_capacity(part, r_max, at_least=budget, dtype=np.float32)[0].graph) for part in parts
            ]
            for name, parts in chunks.items()
        }

    def __call__(self, model_dir: Path | None = None) -> dict:
        """{set: (energies [n] eV, interaction energies E - sum E0 [n] eV, forces: list of [n_atoms, 3] eV/A)}."""
        import jax
        import jax.numpy as jnp

        from jaxtl.model_io import cast_variables, load_model_files

        variables = self.model.variables
        if model_dir is not None:
            variables = jax.tree.map(jnp.asarray, cast_variables(load_model_files(model_dir)[1], "float32"))
        e0 = np.asarray(variables["constants"]["atomic_energies"], np.float64)[0]
        out = {}
        for name, batches in self.batches.items():
            energies, forces = [], []
            numbers = iter(self.numbers[name])
            for n_graphs, graph in batches:
                pred = self.model.predict(graph, False, variables=variables)
                energies.extend(np.asarray(pred["energy"], np.float64)[:n_graphs])
                f = np.asarray(pred["forces"], np.float64)
                offset = 0
                for _ in range(n_graphs):
                    n = len(next(numbers))
                    forces.append(f[offset : offset + n])
                    offset += n
            energies = np.asarray(energies)
            e0_sum = np.array([sum(e0[self.index[int(z)]] for z in zs) for zs in self.numbers[name]])
            out[name] = (energies, energies - e0_sum, forces)
        return out


def rmse(x) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def errors(energies, forces, ref_energies, ref_forces, n_atoms, centred: bool) -> dict:
    """Energy RMSE per atom (meV/atom; `centred`: the mean offset removed) and force RMSE (meV/A)."""
    d = (np.asarray(energies) - np.asarray(ref_energies)) / np.asarray(n_atoms)
    if centred:
        d = d - d.mean()
    df = np.concatenate([np.asarray(a) - np.asarray(b) for a, b in zip(forces, ref_forces)])
    return {"energy_rmse": 1e3 * rmse(d), "forces_rmse": 1e3 * rmse(df)}


def dimer_change(curve, base, n_per_pair: int) -> dict:
    """Per pair and overall: RMS of (interaction energy - foundation's), mean offset of each curve removed (meV)."""
    out = {}
    for k, pair in enumerate(DIMERS):
        part = slice(k * n_per_pair, (k + 1) * n_per_pair)
        d = np.asarray(curve[part]) - np.asarray(base[part])
        out[pair] = 1e3 * rmse(d - d.mean())
    out["all"] = float(np.sqrt(np.mean([out[p] ** 2 for p in DIMERS])))
    return out


def forgetting(pred: dict, found: dict, dft: dict, n_dimer: int) -> dict:
    """The 3BPA and dimer forgetting measures of one model's predictions (see the module docstring)."""
    e, _, f = pred["3bpa"]
    return {
        "3bpa_vs_foundation": errors(e, f, found["3bpa"][0], found["3bpa"][2], dft["n_atoms"], centred=True),
        "3bpa_vs_dft": errors(e, f, dft["energy"], dft["forces"], dft["n_atoms"], centred=True),
        "dimers": dimer_change(pred["dimers"][1], found["dimers"][1], n_dimer),
    }


def labels_of(frames) -> dict:
    return {
        "energy": np.array([a.get_potential_energy() for a in frames]),
        "forces": [a.get_forces() for a in frames],
        "n_atoms": np.array([len(a) for a in frames]),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/strategies")
    p.add_argument("--foundation", default=None, help="a mace-torch file (default: jaxtl.datasets' spice-mace)")
    p.add_argument(
        "--data",
        default=None,
        help="the folder of aspirin_{train,test}.extxyz and 3bpa_300K.extxyz "
        "(default: where jaxtl.datasets finds them)",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 500], help="aspirin training structures")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--steps", type=int, default=200, help="optimisation steps per run (default 200)")
    p.add_argument("--min-epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.005, help="the same for every strategy (default 0.005)")
    p.add_argument(
        "--e0s",
        default="average",
        choices=("average", "estimated", "foundation"),
        help="E0 refit, the same for every strategy (default average)",
    )
    p.add_argument("--lora-rank", type=int, default=4)
    p.add_argument("--replay-size", type=int, default=100, help="rattled copies of training structures replayed")
    p.add_argument("--replay-molecules", type=int, default=81, help="G2 H/C/N/O molecules replayed (at most 81)")
    p.add_argument("--replay-weight", type=float, default=0.5)
    p.add_argument("--n-test", type=int, default=200, help="aspirin test structures (default 200)")
    p.add_argument("--n-3bpa", type=int, default=100, help="3BPA structures for forgetting (default 100)")
    p.add_argument("--n-dimer", type=int, default=11, help="separations per dimer curve in 0.5-1.0 A")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="tiny settings for the test suite")
    args = p.parse_args(argv)
    from _data import data_path
    from _harness import relative_paths

    args.foundation = args.foundation or str(data_path("spice-mace"))
    args.data = args.data or str(data_path("rmd17-aspirin-train").parent)
    if args.fast:
        args.sizes, args.steps, args.min_epochs, args.batch_size = [10, 20], 2, 1, 10
        args.replay_size, args.replay_molecules, args.n_test, args.n_3bpa, args.n_dimer = 4, 6, 6, 4, 3
    logging.basicConfig(level=logging.WARNING)

    import ase.io

    from jaxtl import _xla_flags
    from jaxtl.convert.convert import convert_file
    from jaxtl.finetune import FinetuneConfig, FoundationConfig, finetune
    from jaxtl.train.data import DataConfig

    _xla_flags.enable_compilation_cache()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    foundation = out / "foundation"
    if not (foundation / "config.json").exists():
        convert_file(args.foundation, foundation, dtype="float32", log=lambda *_: None)
    data = Path(args.data)
    test = ase.io.read(write_subset(data / "aspirin_test.extxyz", out / "test.xyz", args.n_test, args.seed), ":")
    bpa = ase.io.read(write_subset(data / "3bpa_300K.extxyz", out / "3bpa.xyz", args.n_3bpa, args.seed), ":")
    replay_file = out / "replay_molecules.xyz"
    n_molecules = write_replay_molecules(replay_file, args.replay_molecules, 0.05, args.seed)
    separations = np.linspace(0.5, 1.0, args.n_dimer)
    evaluate = Evaluator(foundation, {"aspirin": test, "3bpa": bpa, "dimers": dimers(separations)})
    dft = {"aspirin": labels_of(test), "3bpa": labels_of(bpa)}

    found = evaluate()
    a = dft["aspirin"]
    foundation_row = {
        "aspirin_centred": errors(
            found["aspirin"][0], found["aspirin"][2], a["energy"], a["forces"], a["n_atoms"], centred=True
        ),
        "3bpa_vs_dft": errors(
            found["3bpa"][0],
            found["3bpa"][2],
            dft["3bpa"]["energy"],
            dft["3bpa"]["forces"],
            dft["3bpa"]["n_atoms"],
            True,
        ),
        "dimer_curves": {
            pair: found["dimers"][1][k * args.n_dimer : (k + 1) * args.n_dimer].tolist()
            for k, pair in enumerate(DIMERS)
        },
    }
    settings = relative_paths({k: v for k, v in vars(args).items() if k not in ("out", "fast")})
    settings.update(
        fast=args.fast, replay_rattle=0.05, n_replay_molecules=n_molecules, dimer_separations=separations.tolist()
    )

    results_path = out / "results.json"
    previous = json.loads(results_path.read_text()) if results_path.exists() else {}
    same = lambda s: {k: v for k, v in (s or {}).items() if k not in ("sizes", "strategies")}  # noqa: E731
    rows = [r for r in previous.get("runs", []) if same(previous.get("settings")) == same(settings)]
    done = {(r["n_train"], r["strategy"]) for r in rows}

    def save():
        results_path.write_text(
            json.dumps({"settings": settings, "foundation": foundation_row, "runs": rows}, indent=2)
        )

    save()
    for n_train in args.sizes:
        pool = write_subset(
            data / "aspirin_train.extxyz", out / f"train_{n_train}.xyz", n_subset_for(n_train), args.seed
        )
        for name in args.strategies:
            if (n_train, name) in done:
                continue
            n_replay = args.replay_size + n_molecules if name.startswith("replay") else 0
            steps_per_epoch = math.ceil((n_train + n_replay) / args.batch_size)
            epochs = max(args.min_epochs, math.ceil(args.steps / steps_per_epoch))
            t0 = time.time()
            data = DataConfig(
                train_file=str(pool), batch_size=args.batch_size, valid_batch_size=args.batch_size, seed=args.seed
            )
            config = FinetuneConfig(
                FoundationConfig(str(foundation)),
                data,
                strategy_config(name, args, replay_file),
                train_config(epochs, args.lr, args.seed),
                e0s=args.e0s,
            )
            ft = finetune(config, out / f"{name}_{n_train}", log=lambda *_: None)
            pred = evaluate(ft.model_dir)
            wall = time.time() - t0
            row = {
                "n_train": n_train,
                "strategy": name,
                "epochs": epochs,
                "steps": epochs * steps_per_epoch,
                "n_replay": ft.n_replay,
                **errors(pred["aspirin"][0], pred["aspirin"][2], a["energy"], a["forces"], a["n_atoms"], False),
                "n_trainable": ft.report.n_trainable,
                "optimiser_state_bytes": ft.report.state_bytes,
                "train_s": ft.wall_s,
                "wall_s": wall,
                **forgetting(pred, found, dft["3bpa"], args.n_dimer),
            }
            rows.append(row)
            save()
            print(
                f"{name:12s} n={n_train:4d}: E {row['energy_rmse']:7.2f} meV/atom  F {row['forces_rmse']:6.1f} "
                f"meV/A  3BPA dF {row['3bpa_vs_foundation']['forces_rmse']:6.1f}  dimers "
                f"{row['dimers']['all']:8.1f} meV  ({wall:.0f} s)",
                flush=True,
            )
    rows.sort(key=lambda r: (r["n_train"], STRATEGIES.index(r["strategy"])))
    save()
    (out / "results.md").write_text(table(rows, foundation_row, settings))
    print(table(rows, foundation_row, settings))
    plot(rows, foundation_row, out / "strategies.png")
    from jaxtl.train.plot import plot_data_efficiency

    plot_data_efficiency(
        rows,
        out / "learning_curves.png",
        "strategy",
        "SPICE MACE -> rMD17 aspirin: fine-tuning strategies (jaxtl)",
        xlabel="aspirin training structures",
    )


def table(rows, foundation: dict, settings: dict) -> str:
    """One markdown table of every run, the foundation's own errors first."""
    fa, fb = foundation["aspirin_centred"], foundation["3bpa_vs_dft"]
    lines = [
        "| n_train | strategy | trained params | optimiser state | steps | aspirin E (meV/atom) "
        "| aspirin F (meV/A) | 3BPA dE vs foundation (meV/atom) | 3BPA dF vs foundation (meV/A) "
        "| 3BPA E vs DFT (meV/atom) | 3BPA F vs DFT (meV/A) | dimer dE (meV) | wall (s) |",
        "|" + "---|" * 13,
        f"| 0 | foundation (zero-shot) | 0 | 0 | 0 | {fa['energy_rmse']:.2f}* | {fa['forces_rmse']:.1f} | 0 | 0 "
        f"| {fb['energy_rmse']:.2f} | {fb['forces_rmse']:.1f} | 0 | |",
    ]
    for r in rows:
        vf, vd = r["3bpa_vs_foundation"], r["3bpa_vs_dft"]
        lines.append(
            f"| {r['n_train']} | {r['strategy']} | {r['n_trainable']} | {_bytes(r['optimiser_state_bytes'])} "
            f"| {r['steps']} | {r['energy_rmse']:.2f} | {r['forces_rmse']:.1f} | {vf['energy_rmse']:.2f} "
            f"| {vf['forces_rmse']:.1f} | {vd['energy_rmse']:.2f} | {vd['forces_rmse']:.1f} "
            f"| {r['dimers']['all']:.0f} | {r['wall_s']:.0f} |"
        )
    notes = [
        "",
        "*zero-shot aspirin energy: mean offset removed (the foundation's E0s belong to another level of "
        "theory); the fine-tuned models' aspirin energies are plain RMSEs with refitted E0s.",
        "3BPA energies (one composition) are compared with the mean offset removed. dimer dE: RMS over C-C, "
        f"C-H, O-H at {settings['n_dimer']} separations in 0.5-1.0 A of the change of the interaction energy "
        "from the foundation's, each curve's mean offset removed.",
        f"Settings: lr {settings['lr']}, batch {settings['batch_size']}, --steps {settings['steps']} "
        f"(min {settings['min_epochs']} epochs), E0s {settings['e0s']}, LoRA rank {settings['lora_rank']}, replay "
        f"{settings['replay_size']} rattled training copies + {settings['n_replay_molecules']} G2 molecules "
        f"(weight {settings['replay_weight']}), {settings['n_test']} aspirin test and {settings['n_3bpa']} 3BPA "
        "structures.",
    ]
    return "\n".join(lines + notes) + "\n"


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def plot(rows, foundation: dict, path: Path) -> None:
    """Aspirin force RMSE against 3BPA error and dimer change, one colour per strategy, one marker per size
    (dotted: the foundation's own errors)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    colours = dict(zip(STRATEGIES, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    markers = dict(zip(sorted({r["n_train"] for r in rows}), "os^D"))
    panels = (
        (
            "3BPA force RMSE vs DFT (meV/A)",
            lambda r: r["3bpa_vs_dft"]["forces_rmse"],
            "linear",
            foundation["3bpa_vs_dft"]["forces_rmse"],
        ),
        ("dimer repulsion change from the foundation (meV)", lambda r: r["dimers"]["all"], "log", None),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, (ylabel, y, yscale, baseline) in zip(axes, panels):
        for r in rows:
            ax.scatter(r["forces_rmse"], y(r), color=colours[r["strategy"]], marker=markers[r["n_train"]], s=50)
        ax.axvline(foundation["aspirin_centred"]["forces_rmse"], color="grey", ls=":", lw=1)
        if baseline is not None:
            ax.axhline(baseline, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale(yscale)
        ax.set_xlabel("aspirin test force RMSE (meV/A)")
        ax.set_ylabel(ylabel)
    handles = [
        plt.Line2D([], [], color=c, marker="o", ls="")
        for s, c in colours.items()
        if any(r["strategy"] == s for r in rows)
    ]
    labels = [s for s in STRATEGIES if any(r["strategy"] == s for r in rows)]
    handles += [plt.Line2D([], [], color="k", marker=m, ls="", fillstyle="none") for m in markers.values()]
    labels += [f"{n} structures" for n in markers]
    handles.append(plt.Line2D([], [], color="grey", ls=":"))
    labels.append("foundation")
    axes[1].legend(handles, labels, fontsize=8, loc="best")
    fig.suptitle("SPICE MACE -> rMD17 aspirin: accuracy vs forgetting (lower left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    from jaxtl.cpu import configure_cpu

    configure_cpu(restart=True)  # huge pages for XLA's buffers, as the jaxtl command
    main()
