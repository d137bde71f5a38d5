"""Cells of 03_distill_and_md.ipynb: convert -> fine-tune (frozen) -> distil -> MD, on real aspirin data.

Built and executed by make_notebooks.py. With JAXTL_FAST=1 every stage runs tiny settings
(the test suite); otherwise the full chain (about ten minutes on a busy 2-core CPU). Figures and
numbers go to $JAXTL_NB_RESULTS (make_notebooks.py: benchmarks/results/aspirin_distill/), else
to the run folder.
"""

INTRO = """\
# The whole chain on real data: convert, fine-tune, distil, run MD

1. **Convert** the SPICE MACE (`jaxtl.datasets.path('spice-mace')`, a small MACE trained on SPICE, wB97M)
   to jaxtl, checked against mace-torch.
2. **Fine-tune** it with frozen layers on ~200 rMD17 aspirin structures (PBE): the embedding and the
   first interaction stay frozen, the rest trains (the finer choice of `benchmarks/finetune_aspirin.py`).
   Tested on a fixed subset of the aspirin test set. This model is the **teacher**.
3. **Distil**: Langevin MD with the teacher from a few aspirin structures (300 K and 500 K), every k-th
   frame plus rattled copies, labelled by the teacher; a smaller **student** is trained on those labels.
   The student is scored against the teacher (held-out teacher-labelled structures) and against DFT
   (the same aspirin test subset as the teacher), and timed side by side with the teacher.
4. **MD** with the student: a jit-compiled NVE run (`MDEngine`) and a short run through the ASE calculator.

Data and model come from `jaxtl.datasets` (a mirror named by `JAXTL_DATA`, or checked downloads). With
`JAXTL_FAST=1` every stage uses tiny settings (the test suite runs it so); the numbers are then meaningless."""

SETUP = """\
import json, os, shutil, time
from pathlib import Path

import numpy as np
import jax
jax.config.update('jax_enable_x64', True)  # float64 for the NVE run; fine-tuning and distillation run in float32
import ase.io
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown, display

import jaxtl
import jaxtl.datasets
from jaxtl._xla_flags import enable_compilation_cache
enable_compilation_cache()  # compiled programs kept on disk: a re-run skips most compilation

print('JAX devices:', jax.devices())
FAST = bool(os.environ.get('JAXTL_FAST'))
OUT = Path(os.environ.get('JAXTL_NB_OUT', 'runs/notebooks')) / 'aspirin_chain'
RESULTS = Path(os.environ.get('JAXTL_NB_RESULTS', OUT / 'results'))  # figures and results.json
shutil.rmtree(OUT, ignore_errors=True)  # a fresh run: the training loop refuses folders holding checkpoints
for d in (OUT, RESULTS):
    d.mkdir(parents=True, exist_ok=True)

if FAST:
    S = dict(n_train=12, n_test=6, ft_epochs=1, n_starts=2, temperatures=(300, 500), md_steps=10, keep_every=5,
             n_rattled=1, st_epochs=1, speed_repeats=2, nve_steps=20, save_every=10, check_every=10)
else:
    # fine-tuning: 180 training structures / batch 10 = 18 steps an epoch, 11 epochs ~ 200 steps
    S = dict(n_train=200, n_test=100, ft_epochs=11, n_starts=3, temperatures=(300, 500), md_steps=600, keep_every=20,
             n_rattled=1, st_epochs=40, speed_repeats=20, nve_steps=4000, save_every=50, check_every=50)
wall = {}
S"""

CONVERT_MD = """\
## 1. Convert the SPICE MACE

`convert_file` evaluates mace-torch and jaxtl on structures of the model's own elements, in float64 and
in the target dtype (float32 here), and writes nothing if they disagree. The differences it measured:"""

CONVERT = """\
from jaxtl.convert.convert import convert_file

t0 = time.perf_counter()
foundation_dir = OUT / 'foundation'
foundation_config, _ = convert_file(jaxtl.datasets.path('spice-mace'), foundation_dir, dtype='float32',
                                    log=lambda *_: None)
wall['convert_s'] = time.perf_counter() - t0
parity = json.loads((foundation_dir / 'metadata.json').read_text())['parity']
print(f"elements {foundation_config.atomic_numbers}, r_max {foundation_config.r_max} A, "
      f"{foundation_config.num_interactions} interactions, hidden {foundation_config.hidden_irreps}, "
      f"max_ell {foundation_config.max_ell}, correlation {foundation_config.correlation}")
print('dtype    energy rel  forces abs (eV/A)  forces rel  stress rel')
for dtype, e in parity.items():
    print(f"{dtype:8s} {e['energy_rel']:.1e}     {e['forces_abs']:.1e}            {e['forces_rel']:.1e}"
          f"     {e['stress_rel']:.1e}")"""

DATA = """\
def subset(src, dst, n, seed=0):
    \"\"\"A fixed random subset of `n` frames of `src`, written to `dst`.\"\"\"
    frames = ase.io.read(src, ':')
    keep = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
    ase.io.write(dst, [frames[i] for i in keep], format='extxyz')
    return dst

train_file = subset(jaxtl.datasets.path('rmd17-aspirin-train'), OUT / 'aspirin_train_subset.xyz', S['n_train'])
test_file = subset(jaxtl.datasets.path('rmd17-aspirin-test'), OUT / 'aspirin_test_subset.xyz', S['n_test'])
print(f"{S['n_train']} training structures (10% of them for validation), {S['n_test']} test structures; "
      f"{len(ase.io.read(test_file, 0))} atoms each")"""

FINETUNE_MD = """\
## 2. Fine-tune with frozen layers: the teacher

The parameters under `node_embedding` and `interactions_0` are frozen (no update, no optimiser state, no
gradient); the second interaction, the products and the readouts train. The E0s are refitted to the aspirin
energies (PBE, another level of theory than SPICE's wB97M); every aspirin has the same composition, so only
their sum over C9H8O4 is determined, as the warning says (enough for aspirin)."""

FINETUNE = """\
from jaxtl.finetune import FinetuneConfig, FoundationConfig, StrategyConfig, finetune
from jaxtl.train.config import TrainConfig
from jaxtl.train.data import DataConfig
from jaxtl.train.optimizer import OptimizerConfig


def train_config(epochs, lr):
    return TrainConfig(max_num_epochs=epochs, seed=0, progress_bar=False, plot=False, ema=True, ema_decay=0.99,
                       optimizer=OptimizerConfig(lr=lr, scheduler='cosine', decay_epochs=epochs, min_lr_factor=0.05))


config = FinetuneConfig(
    foundation=FoundationConfig(str(foundation_dir)),
    data=DataConfig(train_file=str(train_file), test_file=str(test_file), batch_size=10, seed=0),
    strategy=StrategyConfig(freeze_patterns=('node_embedding*', 'interactions_0*')),
    train=train_config(S['ft_epochs'], 0.005), e0s='average')
t0 = time.perf_counter()
ft = finetune(config, OUT / 'finetune', log=lambda *_: None)
wall['finetune_s'] = time.perf_counter() - t0
teacher_test = ft.train.metrics['test']['all']
print(f"trainable {ft.report.n_trainable} / frozen {ft.report.n_frozen} parameters; frozen leaves unchanged: "
      f"{ft.frozen_unchanged}; {S['ft_epochs']} epochs in {wall['finetune_s']:.0f} s")
print(f"teacher on the {teacher_test['n_graphs']} DFT test structures: E RMSE {teacher_test['energy_rmse']:.2f} "
      f"meV/atom, F RMSE {teacher_test['forces_rmse']:.1f} meV/A")"""

SAMPLE_MD = """\
## 3. Distil the teacher into a smaller student

### Sampling with the teacher
Langevin MD (BAOAB, 0.5 fs, friction 0.01/fs) with the teacher from the first aspirin training structures,
at 300 K and 500 K; every k-th frame is kept, each with one rattled copy (0.04 A). The starting structures'
DFT labels are dropped, so only the DFT test subset is scored against DFT. An MD run that explodes stops with
a message naming the step; its frames so far are kept (`md_errors` below)."""

SAMPLE = """\
from jaxtl.distill import SamplingConfig, distill, sample_structures
from jaxtl.md import MDConfig, MDEngine
from jaxtl.md.simulate import drop_labels

teacher = jaxtl.load_model(ft.model_dir)
starts = [drop_labels(a) for a in ase.io.read(train_file, f":{S['n_starts']}")]
teacher_md = MDEngine(teacher)  # one engine: the compiled chunks are shared by every run
t0 = time.perf_counter()
samples, sampling = [], []
for k, temperature in enumerate(S['temperatures']):
    config = SamplingConfig(md_steps=S['md_steps'], temperature=temperature, dt=0.5, friction=0.01,
                            keep_every=S['keep_every'], n_rattled=S['n_rattled'], rattle_std=0.04,
                            check_every=S['check_every'], seed=100 * k)
    frames, report = sample_structures(teacher, starts, config, progress=False, engine=teacher_md)
    samples += frames
    sampling.append({'temperature': temperature, **{key: report[key] for key in
                     ('n_structures', 'md_steps', 'md_steps_per_s', 'md_errors')}})
wall['sampling_s'] = time.perf_counter() - t0
for s in sampling:
    print(f"{s['temperature']} K: {s['n_structures']} structures, {s['md_steps']} MD steps at "
          f"{s['md_steps_per_s']:.0f} steps/s, md_errors {s['md_errors']}")"""

DISTILL_MD = """\
### Labelling and training the student
The student has two interactions and 32x0e channels like the teacher, but spherical harmonics up to
l = 2, correlation order 2 and a smaller radial MLP (the teacher: l = 3, correlation 3, radial MLP 64x64x64). `distill` labels the samples with the
teacher, holds out 10% as a teacher-labelled test set, trains the student from scratch with the
teacher's E0s, scores teacher and student on the DFT test subset, and times them side by side
(interleaved calls, one aspirin a call, same CPU)."""

DISTILL = """\
from jaxtl.distill import DistillConfig, DistillDataConfig, MACEStudentConfig, SpeedConfig, TeacherConfig

STUDENT = dict(hidden_irreps='32x0e', max_ell=2, correlation=2, num_interactions=2, radial_MLP=(32, 32),
               MLP_irreps='16x0e', num_bessel=8)
ase.io.write(OUT / 'samples.xyz', samples)  # the sampled structures, labelled as they are
config = DistillConfig(
    teacher=TeacherConfig(str(ft.model_dir)),
    data=DistillDataConfig(starts=(str(OUT / 'samples.xyz'),), dft_test_file=str(test_file)),
    student=MACEStudentConfig(model=STUDENT, train=train_config(S['st_epochs'], 0.01)),
    speed=SpeedConfig(structures=4, repeats=S['speed_repeats']))
t0 = time.perf_counter()
report = distill(config, OUT / 'distill', progress=False)  # the config is saved as OUT/distill/distill_config.yaml
wall['distill_s'] = time.perf_counter() - t0
vs_teacher, speed = report['student_vs_teacher'], report['speed']
print(f"labelled {report['n_structures']}; labelling {report['labelling']['structures_per_s']:.0f} structures/s")
print(f"student {report['n_parameters']['student']} parameters, teacher {report['n_parameters']['teacher']}; "
      f"{report['training']['epochs']} epochs in {report['training']['wall_s']:.0f} s")
print(f"student vs teacher ({vs_teacher['n_graphs']} held-out structures): E RMSE {vs_teacher['energy_rmse']:.2f} "
      f"meV/atom, F RMSE {vs_teacher['forces_rmse']:.1f} meV/A")
for who in ('teacher', 'student'):
    e = report[f'{who}_vs_dft']
    print(f"{who} vs DFT ({e['n_graphs']} test structures): E RMSE {e['energy_rmse']:.2f} meV/atom, "
          f"F RMSE {e['forces_rmse']:.1f} meV/A")
print(f"energy+forces of one aspirin: teacher {speed['teacher']['ms_per_call']:.2f} ms, student "
      f"{speed['student']['ms_per_call']:.2f} ms -> {speed['speedup']:.1f}x faster ({speed['device']})")"""

PARITY = """\
from jaxtl.graph import batch_atoms

student = jaxtl.load_model(OUT / 'distill' / 'student' / 'model')
test_atoms = ase.io.read(test_file, ':')
dft_forces = np.concatenate([a.get_forces() for a in test_atoms])


def predicted_forces(model):
    graph = batch_atoms(test_atoms, model.config.r_max, np.float32).graph
    forces = np.asarray(model.predict(graph, compute_stress=False)['forces'])
    return forces[np.asarray(graph.node_mask)]


fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharex=True, sharey=True)
for ax, (name, model) in zip(axes, [('teacher (fine-tuned)', teacher), ('student', student)]):
    pred = predicted_forces(model)
    rmse = 1e3 * np.sqrt(np.mean((pred - dft_forces) ** 2))
    ax.plot(dft_forces.ravel(), pred.ravel(), '.', ms=1.5, alpha=0.5)
    lim = np.abs(dft_forces).max() * 1.05
    ax.plot([-lim, lim], [-lim, lim], 'k-', lw=0.6)
    ax.set(title=f'{name}: F RMSE {rmse:.0f} meV/A', xlabel='DFT force component (eV/A)', aspect='equal')
axes[0].set_ylabel('model force component (eV/A)')
fig.suptitle(f"aspirin test subset ({len(test_atoms)} structures, PBE)")
fig.tight_layout()
fig.savefig(RESULTS / 'forces_parity.png', dpi=110)
plt.close(fig)
Image(filename=str(RESULTS / 'forces_parity.png'))"""

NVE_MD = """\
## 4. MD with the student

A jit-compiled NVE run (velocity Verlet, 0.5 fs, float64) of one aspirin from the test subset, with
Maxwell-Boltzmann velocities at 300 K; the neighbour list is rebuilt between chunks of steps. The drift is
the least-squares slope of the total energy."""

NVE = """\
student64 = jaxtl.load_model(OUT / 'distill' / 'student' / 'model', dtype='float64')
start = drop_labels(ase.io.read(test_file, 0))
nve_config = MDConfig(steps=S['nve_steps'], dt=0.5, ensemble='nve', temperature=300, check_every=S['check_every'],
                      save_every=S['save_every'], seed=1)
t0 = time.perf_counter()
nve = MDEngine(student64).run(start, nve_config)
wall['nve_s'] = time.perf_counter() - t0
drift = nve.drift()
print(f"{nve.steps_done} steps ({nve.time[-1] / 1000:.2f} ps) at {nve.steps_per_s:.0f} steps/s, "
      f"{nve.n_compilations} compilations, {nve.n_rebuilds} neighbour-list rebuilds; error: {nve.error}")
print(f"drift {drift['drift_eV_per_atom_per_ps']:.2e} eV/atom/ps, largest |E_tot - E_tot(0)| "
      f"{drift['max_deviation_eV_per_atom']:.2e} eV/atom; mean T {nve.temperature[len(nve.temperature) // 5:].mean():.0f} K")

e0 = nve.total_energy[0]
fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, gridspec_kw={'height_ratios': [2, 1]})
axes[0].plot(nve.time, nve.potential_energy - e0, label='potential')
axes[0].plot(nve.time, nve.kinetic_energy, label='kinetic')
axes[0].plot(nve.time, nve.total_energy - e0, 'k', label='total')
axes[0].set(ylabel='energy - E_tot(0) (eV)', title=f"student NVE, aspirin, 0.5 fs: drift "
            f"{drift['drift_eV_per_atom_per_ps']:.1e} eV/atom/ps")
axes[0].legend(loc='upper right')
axes[1].plot(nve.time, 1e3 * (nve.total_energy - e0) / nve.n_atoms, 'k')
axes[1].set(xlabel='time (fs)', ylabel='E_tot - E_tot(0)\\n(meV/atom)')
fig.tight_layout()
fig.savefig(RESULTS / 'nve_energy.png', dpi=110)
plt.close(fig)
Image(filename=str(RESULTS / 'nve_energy.png'))"""

ASE_MD = """\
The same start through ASE's `VelocityVerlet` and `jaxtl.MACECalculator` (one Python call a step): its frame
at step `save_every` should match the jit-compiled run's."""

ASE = """\
from jaxtl.md.ase_md import run_ase_md

ase_config = MDConfig(steps=S['save_every'], dt=0.5, ensemble='nve', temperature=300, save_every=S['save_every'],
                      seed=1)
via_ase = run_ase_md(jaxtl.MACECalculator(student64), start, ase_config)
ase_vs_jit = float(np.abs(via_ase.frames[-1].positions - nve.frames[1].positions).max())
print(f"ASE: {via_ase.steps_done} steps at {via_ase.steps_per_s:.0f} steps/s (jit engine: {nve.steps_per_s:.0f}); "
      f"largest position difference at step {via_ase.frames[-1].info['md_step']}: {ase_vs_jit:.1e} A")"""

SUMMARY_MD = "## Summary"

SUMMARY = """\
dft = {who: report[f'{who}_vs_dft'] for who in ('teacher', 'student')}
results = {
    'settings': {**S, 'student': STUDENT, 'fast': FAST},
    'conversion_parity': parity,
    'finetune': {'n_trainable': ft.report.n_trainable, 'n_frozen': ft.report.n_frozen,
                 'frozen': ['node_embedding', 'interactions_0'], 'test': teacher_test},
    'sampling': sampling,
    'n_structures': report['n_structures'],
    'student_vs_teacher': vs_teacher,
    'teacher_vs_dft': dft['teacher'], 'student_vs_dft': dft['student'],
    'n_parameters': report['n_parameters'],
    'speed': speed,
    'nve': {**drift, 'steps': nve.steps_done, 'dt_fs': 0.5, 'steps_per_s': nve.steps_per_s, 'error': nve.error,
            'dtype': 'float64'},
    'ase_vs_jit_max_position_diff_A': ase_vs_jit,
    'wall_s': wall,
}
(RESULTS / 'results.json').write_text(json.dumps(results, indent=2, default=str))

rows = [
    ('teacher (SPICE MACE, fine-tuned, frozen embedding + interactions_0) vs DFT',
     f"{dft['teacher']['energy_rmse']:.2f}", f"{dft['teacher']['forces_rmse']:.1f}"),
    ('student vs DFT', f"{dft['student']['energy_rmse']:.2f}", f"{dft['student']['forces_rmse']:.1f}"),
    ('student vs teacher (held-out teacher labels)', f"{vs_teacher['energy_rmse']:.2f}",
     f"{vs_teacher['forces_rmse']:.1f}"),
]
table = ['| model | E RMSE (meV/atom) | F RMSE (meV/A) |', '|---|---|---|'] + [f'| {a} | {b} | {c} |' for a, b, c in rows]
table += ['', '| | |', '|---|---|',
          f"| parity with mace-torch (float64) | forces {parity['float64']['forces_abs']:.1e} eV/A, energy "
          f"{parity['float64']['energy_rel']:.1e} relative |",
          f"| DFT test structures | {dft['teacher']['n_graphs']} (fixed subset of rMD17 aspirin_test) |",
          f"| teacher-labelled structures | {report['n_structures']} |",
          f"| parameters | teacher {report['n_parameters']['teacher']}, student {report['n_parameters']['student']} |",
          f"| energy+forces, one aspirin | teacher {speed['teacher']['ms_per_call']:.2f} ms, student "
          f"{speed['student']['ms_per_call']:.2f} ms: **{speed['speedup']:.1f}x** ({speed['device']}) |",
          f"| student NVE ({nve.steps_done} x 0.5 fs, float64) | drift {drift['drift_eV_per_atom_per_ps']:.1e} "
          f"eV/atom/ps, max deviation {drift['max_deviation_eV_per_atom']:.1e} eV/atom, {nve.steps_per_s:.0f} steps/s |",
          f"| wall time (s) | " + ', '.join(f"{k[:-2]} {v:.0f}" for k, v in wall.items()) + ' |']
(RESULTS / 'results.md').write_text('\\n'.join(table) + '\\n')
display(Markdown('\\n'.join(table)))"""

CELLS = [
    ("md", INTRO),
    ("code", SETUP),
    ("md", CONVERT_MD),
    ("code", CONVERT),
    ("code", DATA),
    ("md", FINETUNE_MD),
    ("code", FINETUNE),
    ("md", SAMPLE_MD),
    ("code", SAMPLE),
    ("md", DISTILL_MD),
    ("code", DISTILL),
    ("code", PARITY),
    ("md", NVE_MD),
    ("code", NVE),
    ("md", ASE_MD),
    ("code", ASE),
    ("md", SUMMARY_MD),
    ("code", SUMMARY),
]
