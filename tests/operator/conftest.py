"""Fixtures for the operator tests (helpers live in op_samples / op_fakeapi)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from op_fakeapi import RunningApi, serve_fake_api
from op_samples import INTRO, SYSTEM

from mutask.operator.kube import Kube, load_client_config


@pytest.fixture
def system() -> dict[str, Any]:
    return copy.deepcopy(SYSTEM)


@pytest.fixture
def intro() -> dict[str, Any]:
    return copy.deepcopy(INTRO)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningApi, Kube]]:
    """The Kubernetes API stand-in for the operator's end-to-end tests, and a client of it."""
    monkeypatch.setenv("MUTASK_METRICS_PORT", "0")
    monkeypatch.setenv("MUTASK_RESYNC_SECONDS", "0.5")
    monkeypatch.setenv("MUTASK_SYSTEM_RESYNC_SECONDS", "1")
    with serve_fake_api() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        yield api, Kube(client.ApiClient(load_client_config()))
