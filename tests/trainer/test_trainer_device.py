"""runtime/device.py: choosing the device and the autocast dtype, with injected probes.

``env``, ``import_module`` and ``cuda_available`` are injected, so these run anywhere; the
one real-XLA test at the end needs ``torch_xla`` and is skipped without it.
"""

from __future__ import annotations

import math
import os
import types
from pathlib import Path

import pytest
import torch
from trainer_testutil import HP, forever, same_state, snapshot, toy_data, toy_model

from mutask.trainer.errors import DeviceError
from mutask.trainer.runtime.device import select_device
from mutask.trainer.runtime.threads import (
    auto_candidate_workers,
    available_cpus,
    cgroup_cpu_limit,
    requested_cpus,
)
from mutask.trainer.training import Candidate, TrainSettings, train_candidate

FAKE_XLA = types.SimpleNamespace(device=lambda: torch.device("xla"))


def _imports(**modules: object):
    """An import_module that knows only ``modules`` (dotted names as ``__``)."""

    def import_module(name: str) -> object:
        try:
            return modules[name.replace(".", "__")]
        except KeyError:
            raise ImportError(f"No module named {name!r}") from None

    return import_module


def _select(preference: str = "auto", precision: str = "auto", *, env=None, xla=False, cuda=False):
    return select_device(
        preference,
        precision,
        env=env or {},
        import_module=_imports(torch_xla=FAKE_XLA) if xla else _imports(),
        cuda_available=lambda: cuda,
    )


def test_auto_without_accelerators_is_cpu_in_float32() -> None:
    choice = _select()
    assert (choice.kind, choice.device, choice.count, choice.autocast) == (
        "cpu",
        torch.device("cpu"),
        1,
        None,
    )


def test_auto_takes_cuda_when_available() -> None:
    choice = _select(precision="float32", cuda=True)
    assert (choice.kind, choice.device) == ("cuda", torch.device("cuda"))


def test_an_explicit_cuda_index_is_kept() -> None:
    assert _select("cuda:1", "float32", cuda=True).device == torch.device("cuda:1")


def test_cuda_requested_but_unavailable_names_why() -> None:
    with pytest.raises(DeviceError, match="device='cuda': CUDA is not available"):
        _select("cuda")


def test_auto_takes_xla_when_pjrt_device_is_set_and_torch_xla_imports() -> None:
    choice = _select(env={"PJRT_DEVICE": "TPU"}, xla=True, cuda=True)
    assert (choice.kind, choice.device.type) == ("xla", "xla")


def test_xla_device_from_the_legacy_xla_model_api() -> None:
    legacy = types.SimpleNamespace(xla_device=lambda: "xla:0")
    choice = select_device(
        "xla",
        env={"PJRT_DEVICE": "TPU"},
        import_module=_imports(
            torch_xla=types.SimpleNamespace(), torch_xla__core__xla_model=legacy
        ),
        cuda_available=lambda: False,
    )
    assert choice.device == torch.device("xla:0")


def test_auto_ignores_torch_xla_without_pjrt_device() -> None:
    assert _select(xla=True).kind == "cpu"


def test_auto_falls_back_when_pjrt_device_is_set_but_torch_xla_is_missing() -> None:
    assert _select(env={"PJRT_DEVICE": "TPU"}).kind == "cpu"


def test_xla_requested_without_pjrt_device_names_why() -> None:
    with pytest.raises(DeviceError, match="PJRT_DEVICE is not set"):
        _select("xla", xla=True)


def test_xla_requested_without_torch_xla_names_why() -> None:
    with pytest.raises(DeviceError, match="torch_xla is not importable"):
        _select("xla", env={"PJRT_DEVICE": "TPU"})


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("auto", torch.bfloat16), ("float32", None), ("bfloat16", torch.bfloat16)],
)
def test_precision_on_xla(precision: str, expected: torch.dtype | None) -> None:
    assert _select("xla", precision, env={"PJRT_DEVICE": "CPU"}, xla=True).autocast == expected


@pytest.mark.parametrize(
    ("precision", "expected"), [("auto", None), ("float32", None), ("bfloat16", torch.bfloat16)]
)
def test_precision_on_cpu(precision: str, expected: torch.dtype | None) -> None:
    assert _select("cpu", precision).autocast == expected


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, None)])
def test_auto_precision_on_cuda_follows_bf16_support(
    monkeypatch: pytest.MonkeyPatch, bf16: bool, expected: torch.dtype | None
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert _select("cuda", "auto", cuda=True).autocast == expected


def test_describe_names_kind_device_and_autocast() -> None:
    text = _select("cpu", "bfloat16").describe()
    assert text.startswith("cpu (cpu, 1 device(s)") and "bfloat16" in text


@pytest.mark.xla
def test_one_real_xla_training_step_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    pytest.importorskip("torch_xla", reason="torch_xla is not installed (pip install mutask[tpu])")
    choice = select_device("xla", "float32")
    assert choice.kind == "xla"
    model, trainable, frozen = toy_model()
    before, frozen_before = snapshot(trainable), snapshot([frozen])  # on the CPU
    model.to(choice.device)
    x, y = (t.to(choice.device) for t in toy_data())
    result, _ = train_candidate(
        Candidate(model, trainable, [{}, {}], HP, lambda q: q, -math.inf),
        forever((x, y)),
        (x, y),
        TrainSettings(rounds=1, steps_per_round=1),
    )
    assert result.steps == 1 and 0.0 <= result.quality <= 1.0
    model.to("cpu")
    assert not same_state(snapshot(trainable), before)
    assert same_state(snapshot([frozen]), frozen_before)


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [
        ("max 100000", None),
        ("200000 100000", 2.0),
        ("150000 100000", 1.5),
        ("", None),
        ("abc 100000", None),
        ("0 100000", None),
    ],
)
def test_cgroup_cpu_limit_parses_cpu_max(cpu_max: str, limit: float | None) -> None:
    assert cgroup_cpu_limit(cpu_max) == limit


def test_available_cpus_is_capped_by_the_cgroup_limit(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    assert available_cpus(cpu_max) == affinity  # no file: the affinity mask
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == affinity
    cpu_max.write_text("50000 100000\n")  # half a CPU still gets one
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text(f"{(affinity + 3) * 100000} 100000\n")  # a limit above the mask
    assert available_cpus(cpu_max) == affinity


def test_auto_candidate_workers_one_per_core_only_with_single_threaded_cpu_kernels() -> None:
    assert auto_candidate_workers("cpu", 1, candidates=8, cores=4) == 4
    assert auto_candidate_workers("cpu", 1, candidates=3, cores=16) == 3
    assert auto_candidate_workers("cpu", 4, candidates=8, cores=4) == 1
    assert auto_candidate_workers("cuda", 1, candidates=8, cores=16) == 1
    assert auto_candidate_workers("cpu", 1, candidates=0, cores=2) == 1


@pytest.mark.parametrize(
    ("env", "cpus"),
    [
        ({"MUTASK_TRAINER_CPUS": "4"}, 4),
        ({"MUTASK_TRAINER_CPUS": " 1 "}, 1),
        ({}, None),
        ({"MUTASK_TRAINER_CPUS": "0"}, None),
        ({"MUTASK_TRAINER_CPUS": "500m"}, None),
    ],
)
def test_requested_cpus_reads_the_operators_downward_api_variable(
    env: dict[str, str], cpus: int | None
) -> None:
    assert requested_cpus(env) == cpus


def test_on_xla_decides_like_select_device_without_starting_xla() -> None:
    from mutask.trainer.runtime.device import on_xla

    pjrt = {"PJRT_DEVICE": "TPU"}
    assert on_xla("xla", pjrt, _imports(torch_xla=FAKE_XLA))
    assert on_xla("auto", pjrt, _imports(torch_xla=FAKE_XLA))
    assert not on_xla("auto", {}, _imports(torch_xla=FAKE_XLA))  # no PJRT_DEVICE
    assert not on_xla("auto", pjrt, _imports())  # torch_xla missing: select_device falls back
    assert not on_xla("cpu", pjrt, _imports(torch_xla=FAKE_XLA))
