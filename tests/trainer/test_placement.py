"""training/placement.py: one candidate per device, exercised on CPU with an injected device list.

``DeviceChoice.devices=(cpu, cpu)`` runs the multi-device path for real (the split, one
thread per device, per-slot frozen replicas, own components materialised per slot, results
brought back) without a GPU; the runs must publish exactly what a single-device run does.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from trainer_testutil import SHAPE, same_state

from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.evolution import Component, NewComponent
from mutask.trainer.evolution import Path as EvoPath
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.runtime.device import DeviceChoice, select_device
from mutask.trainer.store.objects import LocalObjectStore
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import Interrupted, Lockstep, placement

CPU = torch.device("cpu")
BUDGET = BudgetConfig(
    generations=2,
    candidates=3,
    validation_rounds=1,
    steps_per_round=5,
    batch_size=32,
    max_validation_examples=128,
)
DIGITS = DatasetConfig(source="digits")
LOW = DatasetConfig(source="digits", labels=[0, 1, 2, 3, 4])


def _cfg(store: Path, task: str, dataset: DatasetConfig) -> IntroduceConfig:
    return IntroduceConfig(
        task=task,
        dataset=dataset,
        store=str(store),
        budget=BUDGET,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(image_size=16, max_epochs=0.25),
        device="cpu",
    )


def _engine(store: Path, devices: int, **kw: Any) -> Engine:
    choice = replace(select_device("cpu"), devices=(CPU,) * devices)
    return Engine(
        SystemStore.open(str(store)), choice, progress_bars=False, log=lambda _m: None, **kw
    )


def _digest(store: Path, task: str) -> str:
    """SHA-256 of the task's logits on fixed inputs, from freshly loaded blobs."""
    eng = _engine(store, 1)
    manifest = eng.store.read_manifest(task)
    assert manifest is not None
    _, _, pool = eng.load()
    model = pool.model(EvoPath.from_dict(manifest[0]["path"])).eval()
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return hashlib.sha256(model(x).numpy().tobytes()).hexdigest()


def _grow(store: Path, devices: int, **kw: Any) -> tuple[Any, Engine]:
    bootstrap_root(_engine(store, 1), _cfg(store, "digits", DIGITS))
    eng = _engine(store, devices, **kw)
    return eng.introduce(_cfg(store, "low", LOW)), eng


def test_candidates_go_round_robin_over_devices() -> None:
    assert placement.groups(5, 2) == [[0, 2, 4], [1, 3]]
    assert placement.groups(2, 3) == [[0], [1], []]
    assert placement.groups(3, 1) == [[0, 1, 2]]


def test_device_list_defaults_to_the_one_device_and_starts_with_it() -> None:
    choice = select_device("cpu")
    assert choice.devices == (CPU,)
    assert replace(choice, devices=(CPU, CPU)).devices == (CPU, CPU)
    with pytest.raises(ValueError, match="must start with device"):
        DeviceChoice(CPU, "cpu", 1, None, (torch.device("meta"),))


def test_auto_cuda_on_a_multi_gpu_host_lists_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    choice = select_device("auto", "float32", env={}, cuda_available=lambda: True)
    assert choice.count == 3
    assert choice.devices == (
        torch.device("cuda"),
        torch.device("cuda", 1),
        torch.device("cuda", 2),
    )
    assert select_device("cuda:1", "float32", env={}, cuda_available=lambda: True).devices == (
        torch.device("cuda:1"),
    )


def test_replicas_are_frozen_bit_identical_cached_and_dropped(tmp_path: Path) -> None:
    pool = ComponentPool(SystemStore(LocalObjectStore(tmp_path / "s")), SHAPE, CPU, {}, {})
    block = "encoderblock_0"
    live = pool.materialize(
        NewComponent(Component("c/x", block, SHAPE.component_params(block)), None)
    )
    assert pool.replica("c/x", 0, CPU) is live  # slot 0 is the pool's own device
    rep = pool.replica("c/x", 1, CPU)
    assert rep is not live and pool.replica("c/x", 1, CPU) is rep
    assert not any(p.requires_grad for p in rep.parameters())
    assert all(p.requires_grad for p in live.parameters())  # the primary is untouched
    assert same_state([dict(rep.state_dict())], [dict(live.state_dict())])
    assert all(
        a.data_ptr() != b.data_ptr()
        for a, b in zip(rep.parameters(), live.parameters(), strict=True)
    )
    pool.drop(["c/x"])
    assert pool.replicas[1] == {}


def test_split_over_devices_publishes_exactly_what_one_device_does(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: set[str] = set()
    inner = Lockstep.train_round

    def spy(self: Lockstep, *args: Any, **kw: Any) -> Any:
        name = threading.current_thread().name
        if name.startswith("mutask-device"):
            threads.add(name)
        return inner(self, *args, **kw)

    monkeypatch.setattr(Lockstep, "train_round", spy)
    one, _ = _grow(tmp_path / "one", 1)
    assert threads == set()  # one device: today's path, no placement
    two, eng = _grow(tmp_path / "two", 2)
    assert threads == {"mutask-device-0", "mutask-device-1"}
    assert eng._pool is not None and eng._pool.replicas[1]  # frozen parts were replicated
    assert (two.best.id, two.best.hparams) == (one.best.id, one.best.hparams)
    assert two.best.component_ids == one.best.component_ids
    hashes = [{c: m["param_hash"] for c, m in o.manifest["components"].items()} for o in (one, two)]
    assert hashes[0] == hashes[1]
    assert two.manifest["test_accuracy"] == one.manifest["test_accuracy"]
    assert two.candidates_trained == one.candidates_trained == 6
    assert all(v.ok for v in two.verifications)
    assert _digest(tmp_path / "two", "low") == _digest(tmp_path / "one", "low")
    # more devices than candidates: an idle device, same result
    three, _ = _grow(tmp_path / "three", 4)
    assert three.best.id == one.best.id
    assert _digest(tmp_path / "three", "low") == _digest(tmp_path / "one", "low")


def test_a_stop_in_one_device_group_stops_all_and_resumes(tmp_path: Path) -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def stop_in_second_generation() -> bool:
        with lock:
            calls["n"] += 1
            return calls["n"] > BUDGET.candidates * BUDGET.steps_per_round + 6

    store = tmp_path / "store"
    with pytest.raises(Interrupted):
        _grow(store, 2, should_stop=stop_in_second_generation)
    saved = SystemStore.open(str(store)).load_resume("low")
    assert saved is not None and saved["state"]["generation"] == 1
    resumed = _engine(store, 2).introduce(_cfg(store, "low", LOW))
    straight, _ = _grow(tmp_path / "straight", 1)
    assert (resumed.best.id, resumed.best.hparams) == (straight.best.id, straight.best.hparams)
    assert _digest(store, "low") == _digest(tmp_path / "straight", "low")
