"""Cells claimed by the process that trains them, so several processes can share one grid.

Every process running the same `jaxtl learning-curve` command on one run folder (on one
machine, or on machines that share the folder) takes the next cell nobody holds: before
training a cell it creates `CELL/claim.json` (host, pid, time) with an exclusive create,
which exactly one process wins; it keeps the file's modification time fresh while it
trains (`HEARTBEAT_S`) and removes the file when the cell's record is written. A claim
whose process is gone is taken over: on the same host, when that pid no longer runs (a
stopped process keeps its claim); from another host, when the file has not been touched
for `STALE_S`. Taking over happens under a short lock file of its own, so only one of several
processes finding the same stale claim replaces it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

CLAIM_FILE = "claim.json"
HEARTBEAT_S = 30.0
STALE_S = 600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that pid
        return True
    return True


def holder(cell_dir: Path, stale_s: float = STALE_S) -> dict | None:
    """The claim on `cell_dir` of a live process ({"host", "pid", "since"}), None when it
    is free or its claim is stale."""
    path = Path(cell_dir) / CLAIM_FILE
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):  # being written (or its writer died at once: stale in time)
        owner = {"host": "?", "pid": -1, "since": "?"}
    if owner.get("host") == socket.gethostname():  # a paused process keeps its cells
        return owner if _alive(int(owner.get("pid", -1))) else None
    return owner if time.time() - touched <= stale_s else None


class Claim:
    """This process's claim on one cell: `Claim.take(cell_dir)` or None when another live
    process holds it. Use as a context manager (the claim is released on exit)."""

    def __init__(self, path: Path):
        self.path = path
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name=f"claim {path.parent.name}", daemon=True)
        self._beat.start()

    @classmethod
    def take(cls, cell_dir: str | Path, stale_s: float = STALE_S) -> Claim | None:
        cell_dir = Path(cell_dir)
        cell_dir.mkdir(parents=True, exist_ok=True)
        path = cell_dir / CLAIM_FILE
        me = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        )
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return cls._take_over(path, me, stale_s)
        with os.fdopen(fd, "w") as f:
            f.write(me + "\n")
        return cls(path)

    @classmethod
    def _take_over(cls, path: Path, me: str, stale_s: float) -> Claim | None:
        """Replace a stale claim, under a short lock of its own (`.takeover`): of several
        processes finding the same stale claim, one replaces it and the others see it held."""
        lock = path.with_name(path.name + ".takeover")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime > 60.0:  # left by a process killed mid-takeover
                    lock.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return None
        try:
            if holder(path.parent, stale_s) is not None:
                return None
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(me + "\n")
            os.replace(tmp, path)
        finally:
            os.close(fd)
            lock.unlink(missing_ok=True)
        return cls(path)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return

    def release(self) -> None:
        self._stop.set()
        self._beat.join()
        try:
            owner = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return
        if owner.get("host") == socket.gethostname() and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
