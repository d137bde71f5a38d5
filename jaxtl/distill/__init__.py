"""Distillation: sample structures with a teacher, label them, train a small fast student."""

from jaxtl.distill.distill import DEFAULT_STUDENT, distill, read_structures, student_config
from jaxtl.distill.labelling import LabellingError, LabelStats, label_structures
from jaxtl.distill.sampling import SamplingConfig, rattled_copies, sample_structures
from jaxtl.distill.speed import compare_speed, n_parameters, speedup

__all__ = ["DEFAULT_STUDENT", "LabelStats", "LabellingError", "SamplingConfig", "compare_speed", "distill",
           "label_structures", "n_parameters", "rattled_copies", "read_structures", "sample_structures", "speedup",
           "student_config"]
