"""`jaxtl distill`: teacher-labelled structures in, a small fast student and a report out."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from jaxtl.cli.common import add_distributed_args, join_job
from jaxtl.cli.md import add_md_args

DESCRIPTION = """\
Distil a teacher MACE into a small student. Units: positions A, time fs, temperature K,
energies eV, forces eV/A; errors are reported in meV/atom and meV/A, timings in ms.

  1. structures from --structures (any ASE format; FHI-aims .in files too), MD-sampled
     with the teacher: training runs (Langevin at --temperature for --md-steps steps per
     structure, every --keep-every-th frame, plus --rattle jittered copies of each), and
     independent test runs that training never sees (other seeds, at each
     --test-temperatures; --held-out-starts are used for test runs only); the record
     (starts, temperatures, seeds, steps, stride, rattles, counts, teacher) goes to
     OUT/sampling.json; --md-steps 0 labels the structures as they are (a random
     --test-fraction is held out); --labelled reuses an earlier labelled.xyz;
  2. teacher energies/forces/stress in jit-compiled batches -> OUT/labelled.xyz
     (REF_energy, REF_forces, REF_stress; labels the inputs had are kept as DFT_*);
     a teacher giving NaN stops with an error naming the structure; what was labelled
     before it stays in OUT/labelled.xyz;
  3. the test sets (OUT/test.xyz, never frames of a training trajectory) and a student
     made from the rest (OUT/student: student.json + the model): --student mace trains a
     small MACE from scratch (a jaxtl model folder in OUT/student/model); --student ace
     fits a linear ACE with ace-jax (OUT/student/model.npz; needs jaxtl[ace]);
     jaxtl.load_calculator(OUT/student) loads either as an ASE calculator;
  With --active-rounds N (an ACE student), the student is not fitted to the whole
     training split: from --active-initial of its structures, each of N rounds fits a
     student, runs Langevin MD with it from the training starts (--active-md-steps at
     --active-temperature; held-out starts never), scores every --keep-every-th frame by
     the disagreement of --active-committee readouts drawn from the fit's posterior, and
     has the teacher label the --active-frames most uncertain (at least
     --active-min-separation steps apart; the last frames before a student's MD blew up
     first). Each round's errors on the test sets, its teacher labels so far and the
     frames it chose go to OUT/active/rounds.json; the final student is fitted to what
     the loop labelled;
  4. OUT/report.json: student errors against the teacher on each test set, against DFT
     where labels exist, the teacher/student speed ratio for energy+forces, and for ACE
     the posterior's predicted uncertainty next to the actual errors.

Every setting is saved first as OUT/distill_config.yaml; `jaxtl distill --resume OUT`
continues a stopped run with them: finished steps are kept (sampled.xyz, the frames of
labelled.xyz, train/test.xyz, a trained student), labelling goes on after the last frame
written and a MACE student's training from its last checkpoint.
"""


def cmd_distill(args) -> int:
    from jaxtl.distill.distill import distill
    from jaxtl.distill.labelling import LabellingError
    from jaxtl.graph.io import DataError
    from jaxtl.train.distributed import is_primary

    try:
        args.devices = join_job(args)
        config, out, resume = run_settings(args)
        command = "jaxtl " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
        report = distill(config, out, resume=resume, progress=not args.quiet, command=command)
    except LabellingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (DataError, ImportError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if is_primary():
        print(json.dumps(summary(report, out), indent=2))
    return 0


def summary(report: dict, out) -> dict:
    """What the command prints: the report's errors, speed and counts."""
    return {
        "student": report["student_kind"],
        "test_split": report["test_split"],
        "student_vs_teacher": report["student_vs_teacher"],
        "student_vs_teacher_by_set": report["student_vs_teacher_by_set"],
        "student_vs_dft": report.get("student_vs_dft"),
        "teacher_vs_dft": report.get("teacher_vs_dft"),
        "speedup": report["speed"]["speedup"],
        "teacher_ms_per_call": report["speed"]["teacher"]["ms_per_call"],
        "student_ms_per_call": report["speed"]["student"]["ms_per_call"],
        "speed_through": report["speed"]["through"],
        "uncertainty": {
            name: {k: v for k, v in u.items() if k != "energy_posterior_std_per_structure"}
            for name, u in (report.get("uncertainty") or {}).items()
        }
        or None,
        "labelling_structures_per_s": (report.get("labelling") or {}).get("structures_per_s"),
        "md_errors": report.get("sampling", {}).get("md_errors"),
        "active_rounds": [
            {
                "round": r["round"],
                "teacher_labels": r["teacher_labels"],
                "forces_rmse": {name: e.get("forces_rmse") for name, e in r["errors"].items()},
            }
            for r in (report.get("active") or {}).get("rounds", [])
        ]
        or None,
        "report": f"{out}/report.json",
    }


# what a resumed run may change (`jaxtl.settings.resume_may_change`, which adds --epochs and
# --out): the devices and processes the MACE student trains on (the global batch, --batch-size, stays)
DEVICE_FLAGS = ("devices", "distributed", "coordinator_address", "num_processes", "process_id")
RESUME_MAY_CHANGE = (*DEVICE_FLAGS, "heartbeat_timeout")


def run_settings(args):
    """(DistillConfig, run folder, resume) of the command line.

    --resume RUN_DIR: the config saved in RUN_DIR; --epochs may lengthen a MACE student's
    training and --devices move it to other devices, and any other option given (even
    with its default value) is an error, since it would not be used. Plain --resume: the
    flags' config, which must equal the one saved in --out. Otherwise a new run, in an
    --out that holds none.
    """
    from jaxtl.distill.config import CONFIG_FILE, DistillConfig
    from jaxtl.settings import fixed_on_resume

    if isinstance(args.resume, str):
        out = Path(args.resume)
        if args.out is not None and Path(args.out).resolve() != out.resolve():
            raise ValueError(f"--resume {args.resume} and --out {args.out} name different folders")
        saved = out / CONFIG_FILE
        if not saved.exists():
            raise FileNotFoundError(f"--resume {out}: no {CONFIG_FILE} there (`jaxtl distill` writes one)")
        given = _given(args)
        fixed = fixed_on_resume(args.parser, given)
        if fixed:
            raise ValueError(f"--resume {out} runs with the settings of {saved}; drop {', '.join(fixed.values())}")
        return _resumed(DistillConfig.load(saved), args, given), out, True
    missing = [flag for flag, value in (("--teacher", args.teacher), ("--out", args.out)) if value is None]
    if missing:
        raise ValueError(f"the following arguments are required: {', '.join(missing)} (or --resume RUN_DIR)")
    if not args.resume and (Path(args.out) / CONFIG_FILE).exists():
        raise FileExistsError(f"{args.out} already holds a distillation run: use --resume {args.out} or a new --out")
    return distill_config(args), Path(args.out), bool(args.resume)


def _given(args) -> dict[str, str]:
    """{dest: flag} of the options on the command line (`jaxtl.cli.parse_args`)."""
    if not hasattr(args, "given"):
        raise ValueError("the distill settings need the command line's flags: parse it with jaxtl.cli.parse_args")
    return args.given


def _resumed(config, args, given: dict[str, str]):
    """The saved config with what a resumed run may change: a MACE student's epochs and devices."""
    from jaxtl.distill.config import MACEStudentConfig

    if not isinstance(config.student, MACEStudentConfig):
        return config
    train = config.student.train
    if "epochs" in given:
        train = train.replace(max_num_epochs=args.epochs)
    if any(flag in given for flag in DEVICE_FLAGS):
        train = train.replace(n_devices=args.devices)
    return config.replace(student=config.student.replace(train=train))


def _input_file(path):
    """An input file as an absolute path, so a run resumed from elsewhere finds it."""
    return None if path is None else os.path.abspath(path)


def distill_config(args):
    """The `DistillConfig` of the command line (bad settings fail here, before a run starts)."""
    from jaxtl.distill.config import DistillConfig, DistillDataConfig, MACEStudentConfig, TeacherConfig
    from jaxtl.train.config import TrainConfig
    from jaxtl.train.optimizer import OptimizerConfig

    teacher = args.teacher if not os.path.exists(args.teacher) else os.path.abspath(args.teacher)
    data = DistillDataConfig(
        starts=tuple(_input_file(s) for s in args.structures or ()),
        labelled_file=_input_file(args.labelled),
        dft_test_file=_input_file(args.dft_test),
        test_fraction=args.test_fraction,
        label_batch_size=args.label_batch_size,
        seed=args.seed,
    )
    if args.student == "ace":
        student = ace_config(args)
    else:
        model = dict(
            hidden_irreps=args.student_hidden_irreps,
            max_ell=args.student_max_ell,
            correlation=args.student_correlation,
            num_interactions=args.student_num_interactions,
            radial_MLP=tuple(args.student_radial_mlp),
            MLP_irreps=args.student_mlp_irreps,
            num_bessel=args.student_num_bessel,
        )
        if args.student_r_max is not None:
            model["r_max"] = args.student_r_max
        train = TrainConfig(
            max_num_epochs=args.epochs,
            seed=args.seed,
            plot=False,
            optimizer=OptimizerConfig(lr=args.lr),
            n_devices=args.devices,
        )
        student = MACEStudentConfig(model=model, train=train, batch_size=args.batch_size)
    return DistillConfig(TeacherConfig(teacher), data, sampling_plan(args), student, active=active_config(args))


def active_config(args):
    """The ActiveConfig of the --active-* options; None without --active-rounds."""
    from jaxtl.distill.active import ActiveConfig
    from jaxtl.distill.sampling import SamplingConfig

    if not args.active_rounds:
        return None
    md = SamplingConfig(
        md_steps=args.active_md_steps,
        temperature=args.active_temperature if args.active_temperature is not None else args.temperature,
        dt=args.dt,
        friction=args.friction,
        keep_every=args.keep_every,
        min_distance=args.min_distance,
        seed=args.seed,
    )
    return ActiveConfig(
        rounds=args.active_rounds,
        frames=args.active_frames,
        initial=args.active_initial,
        md=md,
        committee=args.active_committee,
        min_separation=args.active_min_separation,
        seed=args.seed,
    )


def sampling_plan(args):
    """The SamplingPlan of the --md-steps ... options; None without MD."""
    from jaxtl.distill.sampling import SamplingConfig, SamplingPlan

    if args.md_steps <= 0:
        return None
    train = SamplingConfig(
        md_steps=args.md_steps,
        temperature=args.temperature,
        dt=args.dt,
        friction=args.friction,
        keep_every=args.keep_every,
        n_rattled=args.rattle,
        rattle_std=args.rattle_std,
        skin=args.skin,
        check_every=args.check_every,
        min_distance=args.min_distance,
        seed=args.seed,
    )
    return SamplingPlan(
        train=train,
        test_temperatures=tuple(args.test_temperatures or ()),
        test_md_steps=args.test_md_steps,
        test_seed=args.test_seed,
        held_out_starts=tuple(args.held_out_starts or ()),
    )


def ace_config(args):
    """ACEStudentConfig from the --ace-* options."""
    from jaxtl.distill.ace import ACEStudentConfig, parse_r0

    try:
        r0 = parse_r0(args.ace_r0 or ())
    except ValueError as err:
        raise SystemExit(f"error: --ace-r0 {err}") from None
    return ACEStudentConfig(
        order=args.ace_order,
        degree=args.ace_degree,
        r_max=args.ace_r_max,
        r0=r0,
        solver=args.ace_solver,
        polish=args.ace_polish,
        smoothness_prior=not args.ace_no_smoothness_prior,
        smoothness_exponent=args.ace_smoothness_exponent,
        seed=args.seed,
    )


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="label structures with a teacher and train a small fast student",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--teacher", help="teacher: jaxtl model folder or mace-torch .model file (required)")
    p.add_argument("--structures", nargs="+", default=None, help="starting structures (files, every frame)")
    p.add_argument("--labelled", default=None, help="reuse a teacher-labelled extended XYZ (skips sampling/labelling)")
    p.add_argument("--out", default=None, help="output folder (required)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="RUN_DIR",
        help="continue a stopped run: --resume RUN_DIR alone runs with RUN_DIR/distill_config.yaml "
        "(--epochs may be raised, --devices changed); plain --resume with the run's flags continues the run in --out",
    )
    _add_sampling_args(p)
    add_md_args(p)
    _add_data_args(p)
    p.add_argument(
        "--student",
        choices=["mace", "ace"],
        default="mace",
        help="student kind: a small MACE (default) or a linear ACE (ace-jax, pip install 'jaxtl[ace]')",
    )
    _add_mace_student_args(p)
    _add_ace_args(p)
    _add_active_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    g.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    g.add_argument(
        "--batch-size", type=int, default=8, help="structures per training step over all devices (default 8)"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    add_distributed_args(p)  # the MACE student's data parallel training; process 0 samples, labels and scores
    p.set_defaults(func=cmd_distill, parser=p, resume_may_change=RESUME_MAY_CHANGE)


def _add_sampling_args(p) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--md-steps",
        type=int,
        default=0,
        help="Langevin steps with the teacher per starting structure; 0: no MD (default 0)",
    )
    g.add_argument("--keep-every", type=int, default=50, help="keep every k-th MD frame (default 50)")
    g.add_argument("--rattle", type=int, default=0, help="jittered copies per kept frame (default 0)")
    g.add_argument("--rattle-std", type=float, default=0.05, help="jitter standard deviation in A (default 0.05)")
    g.add_argument(
        "--test-temperatures",
        type=float,
        nargs="+",
        default=None,
        help="temperatures in K of the independent test runs from every training start "
        "(default: the training --temperature)",
    )
    g.add_argument("--test-md-steps", type=int, default=None, help="steps per test run (default: --md-steps)")
    g.add_argument(
        "--test-seed",
        type=int,
        default=1000,
        help="first seed of the test runs; must differ from the training seeds (default 1000)",
    )
    g.add_argument(
        "--held-out-starts",
        type=int,
        nargs="+",
        default=None,
        help="indices of starting structures used for test runs only (a facet, a conformer)",
    )


def _add_data_args(p) -> None:
    g = p.add_argument_group("labelling and data")
    g.add_argument("--label-batch-size", type=int, default=8, help="structures per labelling batch (default 8)")
    g.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="held-out share of structures labelled as given, without MD (default 0.1)",
    )
    g.add_argument("--dft-test", default=None, help="DFT-labelled structures to evaluate teacher and student on")


def _add_mace_student_args(p) -> None:
    g = p.add_argument_group("student (MACE fields; r_max and elements default to the teacher's)")
    g.add_argument("--student-hidden-irreps", default="16x0e", help="node features (default 16x0e)")
    g.add_argument("--student-max-ell", type=int, default=1, help="spherical harmonics degree (default 1)")
    g.add_argument("--student-correlation", type=int, default=2, help="body order - 1 (default 2)")
    g.add_argument("--student-num-interactions", type=int, default=1, help="message-passing layers (default 1)")
    g.add_argument(
        "--student-radial-mlp", type=int, nargs="+", default=[32, 32], help="radial MLP widths (default 32 32)"
    )
    g.add_argument("--student-mlp-irreps", default="16x0e", help="readout hidden width (default 16x0e)")
    g.add_argument("--student-num-bessel", type=int, default=8, help="radial Bessel functions (default 8)")
    g.add_argument("--student-r-max", type=float, default=None, help="cutoff in A (default: the teacher's)")


def _add_ace_args(p) -> None:
    g = p.add_argument_group("ACE student (--student ace)")
    g.add_argument("--ace-order", type=int, default=3, help="correlation order, body order - 1 (default 3)")
    g.add_argument("--ace-degree", type=int, default=10, help="total polynomial degree (default 10)")
    g.add_argument("--ace-r-max", type=float, default=5.0, help="cutoff in A (default 5)")
    g.add_argument(
        "--ace-r0",
        nargs="+",
        default=None,
        metavar="EL=A",
        help="bond lengths in A for elements ace-jax has none for (H defaults to 0.74), e.g. H=0.74",
    )
    g.add_argument(
        "--ace-solver",
        choices=["cholesky", "qr"],
        default="cholesky",
        help="evidence and posterior by a Cholesky of the Gram matrix (default) or by QR "
        "(slower, stable when the fit nearly interpolates)",
    )
    g.add_argument(
        "--ace-polish", action="store_true", help="Newton-polish the evidence maximum (a refinement; slower)"
    )
    g.add_argument(
        "--ace-no-smoothness-prior",
        action="store_true",
        help="an isotropic prior instead of ace-jax's smoothness prior",
    )
    g.add_argument(
        "--ace-smoothness-exponent",
        type=float,
        default=4.0,
        help="exponent p of the smoothness prior (default 4; lower: high degrees less penalised)",
    )


def _add_active_args(p) -> None:
    g = p.add_argument_group("uncertainty-driven loop (--student ace)")
    g.add_argument(
        "--active-rounds",
        type=int,
        default=0,
        help="rounds of student MD whose most uncertain frames the teacher labels; 0: no loop (default 0)",
    )
    g.add_argument("--active-frames", type=int, default=10, help="frames labelled per round (default 10)")
    g.add_argument(
        "--active-initial",
        type=int,
        default=0,
        help="training structures the loop starts from (seeded random subset); 0: all (default 0)",
    )
    g.add_argument("--active-md-steps", type=int, default=500, help="student MD steps per start (default 500)")
    g.add_argument(
        "--active-temperature", type=float, default=None, help="student MD temperature in K (default: --temperature)"
    )
    g.add_argument("--active-committee", type=int, default=4, help="posterior draws that score a frame (default 4)")
    g.add_argument(
        "--active-min-separation",
        type=int,
        default=50,
        help="fewest MD steps between two chosen frames of one trajectory (default 50)",
    )
