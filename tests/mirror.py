"""The tests' real data and models, by registry name (`jaxtl.datasets`), from the mirror that
tests/conftest.py points $JAXTL_DATA at (../shared beside the checkout, unless set). Never
downloads: a test whose file is absent skips, naming the entry."""

import os

import pytest

from jaxtl import datasets


def mirror_path(name: str):
    """The local file (or folder) of registry entry `name`, or None when no mirror holds it."""
    try:
        return datasets.path(name, download=False)
    except datasets.DatasetError:
        return None


def needs(*names: str):
    """Skip unless every named entry is in the mirror."""
    missing = [n for n in names if mirror_path(n) is None]
    where = os.environ.get(datasets.DATA_ENV) or "unset"
    return pytest.mark.skipif(bool(missing), reason=f"{missing} not in the data mirror ($JAXTL_DATA: {where})")


def require(name: str):
    """The path of `name`, or skip the calling test."""
    path = mirror_path(name)
    if path is None:
        pytest.skip(f"{name!r} not in the data mirror ($JAXTL_DATA: {os.environ.get(datasets.DATA_ENV) or 'unset'})")
    return path
