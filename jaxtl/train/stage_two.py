"""Stage two (mace-torch `--stage_two` / `--swa`): new loss weights and lr late in training.

From epoch `start` on, the loss keeps its kind but takes the stage-two weights,
the learning rate becomes `swa_lr` (SWALR with one linear anneal epoch is a jump
after one epoch; here the jump is at `start`) and the plateau scheduler stops.
The best-checkpoint tracking restarts, since losses of the two stages are not
comparable.
"""

from __future__ import annotations

import dataclasses

from jaxtl.train.loss import LossConfig


@dataclasses.dataclass(frozen=True)
class StageTwoConfig:
    """Stage-two settings (mace-torch names and defaults).

    Attributes:
        enabled: switch stage two on.
        start_epoch: first stage-two epoch (0-based); None: max(1, epochs // 4 * 3).
        swa_lr: learning rate of stage two.
        energy_weight, forces_weight, stress_weight, virials_weight: loss weights.
    """

    enabled: bool = False
    start_epoch: int | None = None
    swa_lr: float = 1e-3
    energy_weight: float = 1000.0
    forces_weight: float = 100.0
    stress_weight: float = 10.0
    virials_weight: float = 10.0


def start_epoch(cfg: StageTwoConfig, max_num_epochs: int) -> int | None:
    """First stage-two epoch, or None when stage two is off."""
    if not cfg.enabled:
        return None
    if cfg.start_epoch is not None:
        return cfg.start_epoch
    return max(1, max_num_epochs // 4 * 3)


def loss_weights(loss: LossConfig, cfg: StageTwoConfig, stage_two: bool) -> dict[str, float]:
    """Loss term weights of stage one (the loss config's) or stage two."""
    if stage_two:
        return {
            "energy": cfg.energy_weight,
            "forces": cfg.forces_weight,
            "stress": cfg.stress_weight,
            "virials": cfg.virials_weight,
        }
    return loss.weights()
