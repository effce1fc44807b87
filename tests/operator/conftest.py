"""Fixtures for the operator tests (helpers live in op_samples / op_fakeapi)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from op_samples import INTRO, SYSTEM


@pytest.fixture
def system() -> dict[str, Any]:
    return copy.deepcopy(SYSTEM)


@pytest.fixture
def intro() -> dict[str, Any]:
    return copy.deepcopy(INTRO)
