"""The benchmarks' real data and models, by `jaxtl.datasets` name.

The mirror is $JAXTL_DATA when set, else ../shared beside the checkout (the project's
mirror, as tests/conftest.py), else the user cache (downloads, for the entries that have a
public URL). Scripts resolve their defaults after parsing, so `--help` needs no data.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxtl import datasets

MIRROR = Path(__file__).resolve().parents[2] / "shared"


def _root() -> Path | None:
    return None if os.environ.get(datasets.DATA_ENV) or not MIRROR.is_dir() else MIRROR


def data_path(name: str, download: bool = True) -> Path:
    """The local path of registry entry `name` (downloaded and checked when it has a URL and is nowhere)."""
    return datasets.path(name, root=_root(), download=download)


def mirror_path(name: str) -> Path | None:
    """The local path of `name`, or None when no mirror holds it (no download)."""
    try:
        return data_path(name, download=False)
    except datasets.DatasetError:
        return None
