"""How uncertain a student is about a structure, and which structures to label next.

The score of a structure is the disagreement of a committee of models on its forces: the
largest, over atoms, of the standard deviation of the committee's force vectors,

    score = max_i sqrt( mean_m |F_m,i - mean_m F_m,i|^2 )       (eV/A)

For a linear ACE the committee is readouts drawn from the fit's posterior
(`fit_ace_student(..., committee=M)`): its spread is the posterior's, which ace-jax's
evidence fit makes far narrower than the real error, so the score serves as a ranking only
(`rank_correlation` says how well it ranks the real errors).
"""

from __future__ import annotations

from collections.abc import Sequence

import ase
import numpy as np


def committee_forces(calculators: Sequence, atoms: ase.Atoms) -> np.ndarray:
    """[n_members, n_atoms, 3] forces in eV/A of each calculator on `atoms` (constraints
    ignored: every atom's force is the model's)."""
    bare = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    out = []
    for calc in calculators:
        bare.calc = calc
        out.append(np.array(bare.get_forces(), np.float64))
    return np.stack(out)


def force_disagreement(forces: np.ndarray) -> float:
    """The score of one structure from its committee forces [n_members, n_atoms, 3]: the
    largest per-atom standard deviation of the force vectors, eV/A."""
    spread = forces - forces.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(spread**2, axis=-1), axis=0)).max())


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation of x and y (ties broken by order); None under 3 pairs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3:
        return None
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def select_frames(
    scores: Sequence[float], trajectories: Sequence[int], steps: Sequence[int], k: int, min_separation: int
) -> list[int]:
    """Indices of up to `k` frames, highest score first, no two of one trajectory closer
    than `min_separation` MD steps (neighbouring frames of a trajectory say nearly the same).

    Args:
        scores: [n] per frame (inf for the prime candidates, e.g. the last frames before a
            student's MD blew up; NaN never chosen).
        trajectories: [n] which trajectory each frame belongs to.
        steps: [n] the MD step of each frame.
        k: how many to choose.
        min_separation: in MD steps.
    """
    scores = np.asarray(scores, float)
    order = [i for i in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable") if not np.isnan(scores[i])]
    chosen: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        if all(
            trajectories[j] != trajectories[i] or abs(int(steps[j]) - int(steps[i])) >= min_separation for j in chosen
        ):
            chosen.append(int(i))
    return chosen
