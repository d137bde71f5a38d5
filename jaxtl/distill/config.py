"""`DistillConfig`: what a distillation run computes, composed of small frozen settings.

    DistillConfig(
        teacher=TeacherConfig("runs/ft/model"),
        data=DistillDataConfig(starts=("starts.xyz",), dft_test_file="dft_test.xyz"),
        sampling=SamplingPlan(SamplingConfig(md_steps=2000, temperature=500, keep_every=20)),
        student=MACEStudentConfig(model=dict(hidden_irreps="16x0e"), train=TrainConfig(max_num_epochs=200)),
    )

The student is a small MACE (`MACEStudentConfig`: its model fields and its `TrainConfig`)
or a linear ACE (`jaxtl.distill.ace.ACEStudentConfig`); each says its `kind`, so the saved
YAML loads back into the right class. The whole tree round-trips through
`to_dict`/`from_dict` and is saved as OUT/distill_config.yaml.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxtl.config_io import ConfigIO
from jaxtl.distill.ace import ACEStudentConfig
from jaxtl.distill.active import ActiveConfig
from jaxtl.distill.sampling import SamplingConfig, SamplingPlan
from jaxtl.train.config import TrainConfig

CONFIG_FILE = "distill_config.yaml"
# a resumed run may be lengthened (`jaxtl.train.train`), may train its student on other
# devices (the global batch stays: results change by round-off only), and its input files
# may have moved with the run folder
RESUME_MAY_CHANGE = (
    "student.train.max_num_epochs",
    "student.train.stage_two.start_epoch",
    "student.train.n_devices",
    "student.train.checkpoint_interval_s",
    "teacher.model",
    "data.starts",
    "data.labelled_file",
    "data.dft_test_file",
)

# A student about 6x cheaper than the H2/Cu teacher (16x0e, max_ell 3, 2 layers) on CPU.
DEFAULT_STUDENT = dict(
    hidden_irreps="16x0e",
    max_ell=1,
    correlation=2,
    num_interactions=1,
    radial_MLP=(32, 32),
    MLP_irreps="16x0e",
    num_bessel=8,
)


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """The model that samples and labels.

    Attributes:
        model: a jaxtl model folder, a mace-torch `.model` file (converted into
            OUT/teacher) or a released model's name (`jaxtl.foundations`).
        dtype: "float32" or "float64" to load it in; None: the dtype it was saved in.
        head: the head of a multi-head teacher that labels (needed when it has several).
    """

    model: str
    dtype: str | None = None
    head: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "model", str(self.model))
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(f"TeacherConfig.dtype must be 'float32', 'float64' or None, got {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class DistillDataConfig:
    """The structures a run starts from, and how its labelled set is split.

    Attributes:
        starts: starting structure files (any ASE format, every frame; FHI-aims `.in`
            geometry files too): labelled as they are, or MD starts with `sampling`.
        labelled_file: a teacher-labelled extended XYZ from an earlier run instead of
            sampling and labelling; its `split` tags decide the test sets.
        dft_test_file: DFT-labelled structures (REF_* keys or ASE results) on which
            teacher and student are both evaluated.
        test_fraction: held-out share of structures labelled as given (no MD); sampled
            sets are judged on independent trajectories (`split_labelled`).
        label_batch_size: structures per labelling batch.
        seed: seed of the test split and of a MACE student's validation split.
    """

    starts: tuple[str, ...] = ()
    labelled_file: str | None = None
    dft_test_file: str | None = None
    test_fraction: float = 0.1
    label_batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.starts, (str, Path)):
            raise ValueError(f"DistillDataConfig.starts is a sequence of files, got the string {self.starts!r}")
        object.__setattr__(self, "starts", tuple(str(s) for s in self.starts))
        for name in ("labelled_file", "dft_test_file"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(getattr(self, name)))
        if not self.starts and self.labelled_file is None:
            raise ValueError("DistillDataConfig: give starts (structure files) or a labelled_file")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"DistillDataConfig.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.label_batch_size < 1:
            raise ValueError(f"DistillDataConfig.label_batch_size must be >= 1, got {self.label_batch_size}")


def _default_student_train() -> TrainConfig:
    return TrainConfig(max_num_epochs=100, plot=False)


@dataclasses.dataclass(frozen=True)
class MACEStudentConfig:
    """A small MACE trained from scratch on the teacher's labels, with the teacher's E0s.

    Attributes:
        kind: "mace" (names the student kind in a saved config).
        model: `MACEConfig` fields over DEFAULT_STUDENT; atomic_numbers and r_max
            default to the teacher's, correlation may be one int for every layer.
        train: optimisation, loss, epochs, seed of init and data order, n_devices.
        batch_size: structures per training step over all devices (the global batch; each
            of the train.n_devices devices takes batch_size / n_devices of them).
        valid_fraction: share of the training structures used for validation.
    """

    kind: str = "mace"
    model: Mapping[str, Any] = dataclasses.field(default_factory=lambda: dict(DEFAULT_STUDENT))
    train: TrainConfig = dataclasses.field(default_factory=_default_student_train)
    batch_size: int = 8
    valid_fraction: float = 0.1

    def __post_init__(self):
        if self.kind != "mace":
            raise ValueError(f"MACEStudentConfig.kind is 'mace', got {self.kind!r}")
        # lists from a YAML file as the tuples MACEConfig holds, so a saved config compares equal
        model = {**DEFAULT_STUDENT, **self.model}
        object.__setattr__(self, "model", {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()})
        if self.batch_size < 1 or self.batch_size % self.train.n_devices:
            raise ValueError(
                f"MACEStudentConfig.batch_size must be a positive multiple of train.n_devices "
                f"({self.train.n_devices}), got {self.batch_size}"
            )

    def replace(self, **changes) -> MACEStudentConfig:
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class SpeedConfig:
    """The teacher/student timing of the report.

    Attributes:
        structures: test structures timed.
        repeats: rounds of energy+forces calls over them (interleaved teacher, student).
    """

    structures: int = 4
    repeats: int = 20


@dataclasses.dataclass(frozen=True)
class DistillConfig(ConfigIO):
    """Everything a distillation run computes; saved as OUT/distill_config.yaml.

    Attributes:
        teacher: the model that samples and labels (a string: its `model`).
        data: starting structures or a labelled file, a DFT test file, the split.
        sampling: MD with the teacher (`SamplingPlan`: training runs and independent
            test runs; a `SamplingConfig`: its training runs and one test run per start
            at the same temperature with another seed); None: the starts labelled as given.
        student: `MACEStudentConfig` or `ACEStudentConfig` (the `ace` extra).
        speed: the teacher/student timing.
        active: the uncertainty-driven loop (`ActiveConfig`; an ACE student): from a small
            initial subset of the training split, rounds of student MD whose least
            certain frames the teacher labels; the student is fitted to what it chose.
            None: the student is fitted to the whole training split.

    >>> config = DistillConfig("teacher_dir", DistillDataConfig(starts=("starts.xyz",)),
    ...                        SamplingConfig(md_steps=100), ACEStudentConfig(order=2))
    >>> DistillConfig.from_dict(config.to_dict()) == config
    True
    >>> DistillConfig.from_dict(config.to_dict()).student.kind
    'ace'
    >>> config.differences(config.replace(student=ACEStudentConfig(order=3)))
    ['student.order']
    """

    teacher: TeacherConfig
    data: DistillDataConfig
    sampling: SamplingPlan | None = None
    student: MACEStudentConfig | ACEStudentConfig = dataclasses.field(default_factory=MACEStudentConfig)
    speed: SpeedConfig = dataclasses.field(default_factory=SpeedConfig)
    active: ActiveConfig | None = None

    def __post_init__(self):
        if isinstance(self.teacher, (str, Path)):
            object.__setattr__(self, "teacher", TeacherConfig(str(self.teacher)))
        if isinstance(self.sampling, SamplingConfig):
            object.__setattr__(self, "sampling", SamplingPlan(train=self.sampling))
        if self.sampling is not None and self.data.labelled_file is not None:
            raise ValueError(
                "DistillConfig: sampling and data.labelled_file exclude each other "
                "(a labelled file was sampled already)"
            )
        if not isinstance(self.student, (MACEStudentConfig, ACEStudentConfig)):
            raise ValueError(
                f"DistillConfig.student must be a MACEStudentConfig or an ACEStudentConfig, "
                f"got {type(self.student).__name__}"
            )
        if self.active is not None and not isinstance(self.student, ACEStudentConfig):
            raise ValueError(
                "DistillConfig.active: the uncertainty-driven loop scores frames by an ACE student's "
                "posterior committee; use an ACEStudentConfig"
            )

    def differences(self, other: DistillConfig) -> list[str]:
        """Dotted fields that differ from `other`'s, leaving out those a resumed run may
        change (`RESUME_MAY_CHANGE`)."""
        import fnmatch

        from jaxtl.config_io import config_differences

        return [
            k
            for k in config_differences(self, other)
            if not any(fnmatch.fnmatchcase(k, pattern) for pattern in RESUME_MAY_CHANGE)
        ]
