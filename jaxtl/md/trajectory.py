"""MD frames on disk as they are produced, and the frame a resumed run starts from.

Extended XYZ (any name but `.traj`) or an ASE trajectory (`.traj`). Each batch of frames
is flushed and synced to disk before the run goes on, so a killed run keeps every frame
of its finished chunks; a frame cut short by the kill is dropped when the run resumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

import ase
import ase.io


def _is_traj(path: Path) -> bool:
    return path.suffix == ".traj"


def complete_frames(path: str | os.PathLike) -> list[ase.Atoms]:
    """The frames of `path` that were written in full ([] for a missing or empty file)."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return []
    frames = []
    try:
        for atoms in ase.io.iread(path, index=":", format="traj" if _is_traj(path) else "extxyz"):
            frames.append(atoms)  # noqa: PERF402  (one at a time: those before a bad frame are kept)
    except Exception:  # noqa: BLE001, S110  (a frame cut short by a kill: whatever the reader raises)
        pass
    return frames


class FrameWriter:
    """Appends frames to a trajectory file, each batch flushed and synced.

    `resume=False` starts the file anew; `resume=True` keeps its complete frames (and drops
    a partial last one) and appends after them.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = complete_frames(self.path) if resume else []
        if kept:  # rewritten without a partial last frame, then replaced at once: never fewer frames on disk
            tmp = self.path.with_name(f".{self.path.name}.tmp{self.path.suffix}")
            if _is_traj(self.path):
                from ase.io.trajectory import Trajectory

                with Trajectory(str(tmp), "w") as traj:
                    for atoms in kept:
                        traj.write(atoms)
            else:
                ase.io.write(tmp, kept, format="extxyz")
            os.replace(tmp, self.path)
        mode = "a" if kept else "w"
        if _is_traj(self.path):
            from ase.io.trajectory import Trajectory

            self._traj, self._file = Trajectory(str(self.path), mode), None
        else:
            self._traj, self._file = None, open(self.path, mode)  # noqa: SIM115  (open while the run lasts)
        self.n_frames = len(kept)

    def write(self, frames: list[ase.Atoms]) -> None:
        if self._traj is not None:
            for atoms in frames:
                self._traj.write(atoms)  # each frame complete on disk (ASE's writer flushes it)
            os.fsync(self._traj.backend.fd.fileno())
        else:
            ase.io.write(self._file, frames, format="extxyz")
            self._file.flush()
            os.fsync(self._file.fileno())
        self.n_frames += len(frames)

    def close(self) -> None:
        if self._traj is not None:
            self._traj.close()
        else:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
