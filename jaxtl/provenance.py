"""What reproduces a result: the jaxtl commit, the command, the device, library versions, date."""

from __future__ import annotations

import datetime
import platform
import subprocess
from pathlib import Path


def jaxtl_commit() -> str:
    """The jaxtl checkout's commit ("+dirty" with uncommitted changes), or "unknown"."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def provenance(command: str, commit: str) -> dict:
    """What reproduces the report: commit, command, device, library versions, date."""
    import jax

    versions = {"python": platform.python_version(), "jax": jax.__version__}
    for name in ("jaxlib", "flax", "optax", "numpy", "ase"):
        try:
            versions[name] = __import__(name).__version__
        except (ImportError, AttributeError):
            versions[name] = None
    return {
        "jaxtl_commit": commit,
        "command": command,
        "device": [str(d) for d in jax.devices()],
        "versions": versions,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
