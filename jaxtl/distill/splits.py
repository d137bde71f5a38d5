"""Which labelled structures train a student and which judge it.

A test frame drawn from a training trajectory sits a few femtoseconds from a training
frame, so its error says little about the student elsewhere. Test sets therefore come
from trajectories training never saw (`SamplingPlan`: other seeds and temperatures, and
whole starting geometries held out). Structures with no trajectory behind them (labelled
as given, `md_step` absent or 0) may be split at random.
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np

from jaxtl.distill.sampling import TEST_HELD_OUT_START, TRAIN

RANDOM = "test_random_structures"


def split_labelled(
    labelled: Sequence[ase.Atoms], test_fraction: float = 0.1, seed: int = 0
) -> tuple[list[ase.Atoms], dict[str, list[ase.Atoms]], str]:
    """(train, {test set name: structures}, how the split was made).

    - Structures tagged with info `split` (from `sample_plan`): "train" trains, every
      other tag is a test set of its own.
    - Untagged MD frames (info `md_step` > 0, e.g. a labelled file from an older run):
      the starts' trajectories (info `sample_start`) are held out whole, the last start
      as test; one start alone is an error, since only its own frames could test it.
    - Structures without MD: a seeded random `test_fraction` share (at least one).
    """
    tags = [a.info.get("split") for a in labelled]
    if any(t is not None for t in tags):
        untagged = [i for i, t in enumerate(tags) if t is None]
        if untagged:
            raise ValueError(f"labelled structures {untagged[:5]} have no `split` tag while others do")
        train = [a for a in labelled if a.info["split"] == TRAIN]
        tests: dict[str, list] = {}
        for a in labelled:
            if a.info["split"] != TRAIN:
                tests.setdefault(str(a.info["split"]), []).append(a)
        how = "independent trajectories (tagged by the sampling plan)"
    elif any(int(a.info.get("md_step", 0)) > 0 for a in labelled):
        starts = sorted({int(a.info.get("sample_start", 0)) for a in labelled})
        if len(starts) < 2:
            raise ValueError(
                "the labelled frames come from MD of a single start and carry no `split` tag: "
                "a random share of one trajectory's frames is no test; resample with a "
                "SamplingPlan (independent test runs) or give separate test structures"
            )
        held = starts[-1]
        train = [a for a in labelled if int(a.info.get("sample_start", 0)) != held]
        tests = {TEST_HELD_OUT_START: [a for a in labelled if int(a.info.get("sample_start", 0)) == held]}
        how = f"whole trajectories of start {held} held out (untagged MD frames)"
    else:
        order = np.random.default_rng(seed).permutation(len(labelled))
        n_test = max(1, int(round(test_fraction * len(labelled))))
        tests = {RANDOM: [labelled[i] for i in sorted(order[:n_test])]}
        train = [labelled[i] for i in sorted(order[n_test:])]
        how = f"random {test_fraction:g} share of structures labelled as given (no MD)"
    if len(train) < 2:
        raise ValueError(f"{len(train)} training structures: too few to train a student")
    if not any(tests.values()):
        raise ValueError("no test structures: a student cannot be judged")
    return train, tests, how
