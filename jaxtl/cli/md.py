"""`jaxtl md`: molecular dynamics with a jaxtl model folder."""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Run MD with a jaxtl model. Units: positions A, time fs, temperature K, energy eV.
By default the whole run is jit-compiled in chunks of --check-every steps (lax.scan),
with the neighbour list (cutoff r_max + --skin) rebuilt on the host when an atom has
moved skin/2 since the last rebuild; --ase runs the same MD through ASE and MACECalculator instead. Frames are written to
--out as they are produced (extended XYZ, or an ASE trajectory for a .traj name; energy,
forces, velocities), flushed after every chunk, so a killed run keeps them; --resume
continues from the last frame in --out. A run that explodes stops with a message naming
the step, keeps the frames so far and exits with status 3.
"""


def add_md_args(p: argparse.ArgumentParser) -> None:
    """The MD settings (shared with `jaxtl distill`)."""
    g = p.add_argument_group("molecular dynamics")
    g.add_argument("--dt", type=float, default=1.0, help="time step in fs (default 1)")
    g.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        help="temperature in K: Langevin target and initial Maxwell-Boltzmann velocities (default 300)",
    )
    g.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs (default 0.01)")
    g.add_argument(
        "--skin",
        type=float,
        default=None,
        help="neighbour-list skin in A (default: chosen from the velocities, temperature, masses and "
        "--dt so the fastest atom takes about 20 steps to move skin/2, within 0.3-1.5 A). Each step cuts the "
        "pairs within r_max out of the list, so a thicker skin costs little per step and rebuilds less often; "
        "the forces stay exact either way",
    )
    g.add_argument(
        "--check-every",
        type=int,
        default=20,
        help="steps per jit-compiled chunk: frames are written and progress shown between chunks; a chunk "
        "ends early for a neighbour-list rebuild (default 20)",
    )
    g.add_argument(
        "--min-distance", type=float, default=0.5, help="stop when two atoms come closer than this, in A (default 0.5)"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of velocities and Langevin noise (default 0)")


def md_config(args, steps: int, save_every: int, ensemble: str = "langevin"):
    from jaxtl.md.simulate import MDConfig

    return MDConfig(
        steps=steps,
        dt=args.dt,
        ensemble=ensemble,
        temperature=args.temperature,
        friction=args.friction,
        skin=args.skin,
        check_every=args.check_every,
        save_every=save_every,
        min_distance=args.min_distance,
        seed=args.seed,
    )


def cmd_md(args) -> int:
    import ase.io

    from jaxtl.api import load_model
    from jaxtl.md.trajectory import FrameWriter, complete_frames

    config = md_config(args, args.steps, args.save_every, args.ensemble)
    start_step, atoms = 0, None
    if args.resume:
        done = complete_frames(args.out)
        if done:
            atoms = done[-1]
            start_step = int(atoms.info.get("md_step", -1))
            if start_step < 0:
                raise ValueError(f"{args.out}: frame {len(done) - 1} has no md_step: not a jaxtl md trajectory")
            if start_step >= args.steps:
                print(f"{args.out}: already at step {start_step} of {args.steps}; nothing to do", file=sys.stderr)
                return 0
            print(f"resuming {args.out} from step {start_step} ({len(done)} frames kept)", file=sys.stderr)
    if atoms is None:
        atoms = ase.io.read(args.structure, index=args.index)
    model = load_model(args.model, dtype=args.dtype, backend=args.backend)
    with FrameWriter(args.out, resume=start_step > 0) as writer:
        if args.ase:
            from jaxtl.md.ase_md import run_ase_md

            result = run_ase_md(
                model, atoms, config, progress=not args.quiet, on_frames=writer.write, start_step=start_step
            )
        else:
            from jaxtl.md.simulate import run_md

            result = run_md(
                model, atoms, config, progress=not args.quiet, on_frames=writer.write, start_step=start_step
            )
    half = result.temperature[len(result.temperature) // 2 :]
    summary = {
        "steps_done": result.steps_done,
        "time_fs": result.steps_done * args.dt,
        "frames": writer.n_frames,
        "first_step": start_step,
        "steps_per_s": round(result.steps_per_s, 2),
        "mean_temperature_K_second_half": float(half.mean()),
        "compilations": result.n_compilations,
        "neighbour_list_rebuilds": result.n_rebuilds,
        "exact_graph_overflows": result.n_overflows,
        "neighbour_list_skin_A": None if args.ase else round(result.skin, 4),
        "error": result.error,
        "trajectory": args.out,
    }
    if args.ensemble == "nve":
        summary.update(result.drift())
    print(json.dumps(summary, indent=2))
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
        return 3
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "md",
        help="molecular dynamics (NVE or Langevin NVT) with a jaxtl model",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="jaxtl model folder")
    p.add_argument("--structure", required=True, help="starting structure (any format ASE reads)")
    p.add_argument("--index", default="-1", help="frame of --structure to start from (default -1, the last)")
    p.add_argument("--steps", type=int, default=1000, help="number of MD steps (default 1000)")
    p.add_argument(
        "--ensemble",
        choices=["langevin", "nve"],
        default="langevin",
        help="langevin (NVT, BAOAB) or nve (velocity Verlet) (default langevin)",
    )
    p.add_argument("--save-every", type=int, default=10, help="write every k-th frame (default 10)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=None,
        help="model dtype for the run (default: the model's; float64 for careful NVE)",
    )
    p.add_argument(
        "--backend",
        default="xla",
        choices=["xla", "cueq"],
        help="xla (default) or cueq: NVIDIA cuEquivariance kernels (pip install jaxtl[cueq])",
    )
    p.add_argument("--ase", action="store_true", help="run through ASE's integrators and MACECalculator")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--out",
        required=True,
        help="trajectory file, written as frames are produced (extended XYZ; an ASE trajectory for a .traj name)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last complete frame in --out (its "
        "positions, velocities and step) up to --steps in all, appending to --out; without it --out "
        "is started anew",
    )
    add_md_args(p)
    p.set_defaults(func=cmd_md)
