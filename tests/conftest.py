"""Shared pytest setup: make ``tests/`` importable, so test modules can write
``from structures import bulk`` and ``from convert.torch_models import REGISTRY``."""

import os
import sys

_TESTS = os.path.dirname(os.path.abspath(__file__))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
