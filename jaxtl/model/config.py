"""The architecture of a jaxtl MACE, saved as JSON next to the weights."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jaxtl.model.irreps import parse_irreps, require_natural_parity
from jaxtl.model.radial import SILU_CST


@dataclasses.dataclass(frozen=True)
class MACEConfig:
    """Hyper-parameters of a MACE / ScaleShiftMACE, with mace-torch's names.

    Numbers that are *data* rather than architecture (E0s, scale and shift,
    radial-basis frequencies, coupling tensors) live in the `constants` collection
    of the variables, not here.

    Examples:
        A per-layer field given one value applies to every interaction:

        >>> config = MACEConfig(atomic_numbers=(1, 8), r_max=5.0, hidden_irreps="32x0e+32x1o", correlation=3)
        >>> config.correlation, config.num_elements
        ((3, 3), 2)
        >>> MACEConfig.from_dict(config.to_dict()) == config
        True
        >>> config.replace(num_interactions=3, correlation=2, avg_num_neighbors=12.0).avg_num_neighbors
        (12.0, 12.0, 12.0)

        Inconsistent fields are refused when the config is made:

        >>> MACEConfig(atomic_numbers=(1, 1))
        Traceback (most recent call last):
        ...
        ValueError: atomic_numbers has duplicates: (1, 1)
    """

    atomic_numbers: tuple[int, ...]
    r_max: float = 5.0
    num_bessel: int = 8
    num_polynomial_cutoff: float = 5.0
    radial_type: str = "bessel"
    distance_transform: str = "None"
    apply_cutoff: bool = True
    max_ell: int = 3
    hidden_irreps: str = "32x0e"
    edge_irreps: str | None = None
    use_edge_irreps_first: bool = False
    MLP_irreps: str = "16x0e"
    num_interactions: int = 2
    interaction_cls_first: str = "RealAgnosticResidualInteractionBlock"
    interaction_cls: str = "RealAgnosticResidualInteractionBlock"
    correlation: tuple[int, ...] = (3, 3)
    radial_MLP: tuple[int, ...] = (64, 64, 64)
    avg_num_neighbors: tuple[float, ...] = (1.0, 1.0)
    model_type: str = "ScaleShiftMACE"  # or "MACE" (no scale/shift)
    heads: tuple[str, ...] = ("Default",)
    pair_repulsion: bool = False
    use_agnostic_product: bool = False
    use_last_readout_only: bool = False
    keep_last_layer_irreps: bool = False
    gate: str = "silu"
    gate_cst: float = SILU_CST
    dtype: str = "float32"

    def __post_init__(self):
        def fix(name, conv):
            object.__setattr__(self, name, conv(getattr(self, name)))

        fix("atomic_numbers", lambda v: tuple(int(z) for z in v))
        fix("radial_MLP", lambda v: tuple(int(h) for h in v))
        fix("heads", lambda v: tuple(str(h) for h in v))
        if isinstance(self.correlation, int):
            object.__setattr__(self, "correlation", (self.correlation,) * self.num_interactions)
        fix("correlation", lambda v: tuple(int(c) for c in v))
        if isinstance(self.avg_num_neighbors, (int, float)):
            object.__setattr__(self, "avg_num_neighbors", (float(self.avg_num_neighbors),) * self.num_interactions)
        fix("avg_num_neighbors", lambda v: tuple(float(a) for a in v))
        self.validate()

    def validate(self) -> None:
        if len(self.correlation) != self.num_interactions:
            raise ValueError(
                f"correlation has {len(self.correlation)} entries for {self.num_interactions} interactions"
            )
        if len(self.avg_num_neighbors) != self.num_interactions:
            raise ValueError("avg_num_neighbors needs one value per interaction")
        if len(set(self.atomic_numbers)) != len(self.atomic_numbers):
            raise ValueError(f"atomic_numbers has duplicates: {self.atomic_numbers}")
        require_natural_parity(parse_irreps(self.hidden_irreps), "hidden_irreps")
        if self.model_type not in ("MACE", "ScaleShiftMACE"):
            raise ValueError(f"model_type must be MACE or ScaleShiftMACE, not {self.model_type!r}")
        if self.radial_type not in ("bessel", "gaussian", "chebyshev"):
            raise ValueError(f"unknown radial_type {self.radial_type!r}")
        if self.distance_transform not in ("None", "Agnesi", "Soft"):
            raise ValueError(f"unknown distance_transform {self.distance_transform!r}")
        if self.gate not in ("silu", "None"):
            raise NotImplementedError(f"readout gate {self.gate!r} is not supported (silu or None)")
        from jaxtl.model.interaction import INTERACTION_CLASSES

        for cls in (self.interaction_cls_first, self.interaction_cls):
            if cls not in INTERACTION_CLASSES:
                raise NotImplementedError(f"interaction block {cls} is not supported; jaxtl has {INTERACTION_CLASSES}")

    @property
    def num_elements(self) -> int:
        return len(self.atomic_numbers)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MACEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MACEConfig fields: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> MACEConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **changes) -> MACEConfig:
        return dataclasses.replace(self, **changes)
