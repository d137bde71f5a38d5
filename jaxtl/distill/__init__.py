"""Distillation: sample structures with a teacher, label them, train a small fast student."""

from jaxtl.distill.ace import ACEStudentConfig, fit_ace_student
from jaxtl.distill.active import ActiveConfig, active_learning
from jaxtl.distill.config import (
    DEFAULT_STUDENT,
    DistillConfig,
    DistillDataConfig,
    MACEStudentConfig,
    SpeedConfig,
    TeacherConfig,
)
from jaxtl.distill.distill import distill, student_config
from jaxtl.distill.labelled_set import read_structures
from jaxtl.distill.labelling import LabellingError, LabelStats, label_structures
from jaxtl.distill.sampling import SamplingConfig, SamplingPlan, rattled_copies, sample_plan, sample_structures
from jaxtl.distill.speed import compare_calculators, compare_speed, n_parameters, speedup
from jaxtl.distill.splits import split_labelled
from jaxtl.distill.surfaces import step_edges

__all__ = [
    "DEFAULT_STUDENT",
    "ACEStudentConfig",
    "ActiveConfig",
    "DistillConfig",
    "DistillDataConfig",
    "LabelStats",
    "LabellingError",
    "MACEStudentConfig",
    "SamplingConfig",
    "SamplingPlan",
    "SpeedConfig",
    "TeacherConfig",
    "active_learning",
    "compare_calculators",
    "compare_speed",
    "distill",
    "fit_ace_student",
    "label_structures",
    "n_parameters",
    "rattled_copies",
    "read_structures",
    "sample_plan",
    "sample_structures",
    "speedup",
    "step_edges",
    "split_labelled",
    "student_config",
]
