"""No forgetting, checked at the precision a task was published with (bfloat16 on CPU here).

A healthy bf16 run publishes and verifies cleanly; a changed frozen weight still fails;
manifests from before the precision was recorded verify as float32.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mutask.trainer.cli import main
from mutask.trainer.iteration import verify as verify_module
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore

TINY = ["--generations", "1", "--candidates", "2", "--rounds", "1", "--steps", "5"]
TINY += ["--image-size", "16", "--max-epochs", "0.25"]


def _introduce(store: Path, task: str, *flags: str) -> int:
    argv = ["introduce", "--store", str(store), "--task", task, "--device", "cpu", "--quiet"]
    return main([*argv, *TINY, "--batch-size", "32", *flags])


def _engine(store: Path) -> Engine:
    return Engine(
        SystemStore.open(str(store)), select_device("cpu"), progress_bars=False, log=print
    )


@pytest.fixture(scope="module")
def bf16_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root and two tasks, each published with `mutask introduce --precision bfloat16`."""
    store = tmp_path_factory.mktemp("bf16") / "store"
    assert _introduce(store, "digits", "--precision", "bfloat16", "--bootstrap-root") == 0
    assert _introduce(store, "low", "--precision", "bfloat16", "--labels", "0,1,2,3,4") == 0
    return store


def test_a_bf16_run_publishes_and_verifies_cleanly(
    bf16_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifests = SystemStore.open(str(bf16_store)).manifests()
    assert {m["precision"] for m in manifests.values()} == {"bfloat16"}
    assert {m["device_kind"] for m in manifests.values()} == {"cpu"}
    capsys.readouterr()
    assert main(["verify", "--store", str(bf16_store)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(" ok " in line and "probe=True precision=bfloat16" in line for line in lines)
    # the recorded accuracy is the bf16 one: re-measured at bf16 it is bit-identical
    checks = _engine(bf16_store).verify()
    assert all(
        v.accuracy_compared and v.test_accuracy_now == v.test_accuracy_recorded for v in checks
    )


def test_a_changed_frozen_weight_still_fails_verification(bf16_store: Path) -> None:
    engine = _engine(bf16_store)
    _, manifests, pool = engine.load()
    head = manifests["digits"]["path"]["components"]  # (name, component id) pairs
    cid = dict(head)["head"]
    with torch.no_grad():
        for p in pool.get(cid).parameters():
            p.mul_(1.5)
    checks = {v.task: v for v in engine.verify()}
    bad = checks["digits"]
    assert not bad.ok and not bad.hashes_ok and bad.bad_components == [cid]
    assert bad.probe_ok is False  # the bf16 outputs changed too
    assert checks["low"].ok and checks["__root__"].ok


def test_bf16_outputs_are_compared_only_on_the_same_device_model(
    bf16_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verify_module, "device_model", lambda _choice: "cpu another-isa")
    checks = _engine(bf16_store).verify()
    assert all(v.ok and v.hashes_ok for v in checks)
    assert all(v.probe_ok is None and not v.accuracy_compared for v in checks)


def test_manifests_without_a_precision_verify_as_float32(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _introduce(store, "digits", "--bootstrap-root") == 0
    system_store = SystemStore.open(str(store))
    for task in system_store.tasks():
        read = system_store.read_manifest(task)
        assert read is not None and read[0]["precision"] == "float32"
        old = {k: v for k, v in read[0].items() if k not in ("precision", "device_model")}
        system_store.publish(task, old, expected=read[1])
    checks = _engine(store).verify()
    assert [v.precision for v in checks] == ["float32", "float32"]
    assert all(v.ok and v.probe_ok for v in checks)
