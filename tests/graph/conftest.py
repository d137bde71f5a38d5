"""Shared fixtures for the graph tests."""

from collections.abc import Callable
from pathlib import Path

import pytest
from mirror import require


@pytest.fixture(scope="session")
def dataset() -> Callable[[str], Path]:
    """`dataset(name)`: the mirror's file of a `jaxtl.datasets` entry (skips when absent)."""
    return require
