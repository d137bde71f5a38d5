"""Learning curves at convergence: error against training-set size, per strategy, over seeds.

    from jaxtl.learning_curve import DataSettings, GridSettings, LearningCurveConfig, learning_curve
    config = LearningCurveConfig(DataSettings("spice_mace.model", "pool.xyz", "test.xyz"),
                                 GridSettings(fractions=(0.05, 0.1, 1.0), strategies=("scratch", "f5"), seeds=3))
    result = learning_curve(config, "runs/lc")   # resumable: run again to continue

Modules: `config` (the settings, saved with the run), `subsets` (seeded nested subsets),
`cell` (one cell trained to convergence), `grid` (the loop and the input checks),
`report` (results.json, results.md with the verdict, learning_curve.png), `claims` (cells
shared between processes), `merge` (cells of another run taken from its results.json),
`status` (where a grid stands, from its run folder).
"""

from jaxtl.learning_curve.config import (
    ConvergenceSettings,
    DataSettings,
    GridSettings,
    LearningCurveConfig,
    TrainSettings,
    check_strategy,
)
from jaxtl.learning_curve.grid import GridResult, learning_curve
from jaxtl.learning_curve.subsets import Split, split_pool

__all__ = [
    "ConvergenceSettings",
    "DataSettings",
    "GridResult",
    "GridSettings",
    "LearningCurveConfig",
    "Split",
    "TrainSettings",
    "check_strategy",
    "learning_curve",
    "split_pool",
]
