"""Lockstep generation training gives the very bits of training candidates one by one."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.data import Augmenter, BatchStream
from mutask.trainer.evolution import ViTShape, architecture
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.runtime.device import DeviceChoice, select_device
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import (
    Candidate,
    Interrupted,
    Lockstep,
    TrainSettings,
    train_generation,
)

SHAPE = ViTShape(hidden=32, depth=3, heads=4, mlp=64, patch=4, image_size=16)
HP = {"opt_lr": 0.05, "opt_lr_warmup_ratio": 0.1, "opt_momentum": 0.9, "opt_nesterov": False}


def _root() -> dict[str, nn.Module]:
    root: dict[str, nn.Module] = {}
    for i, name in enumerate(architecture(SHAPE.depth, set())):
        gen = torch.Generator().manual_seed(100 + i)
        module = build_component(name, SHAPE, num_classes=4, generator=gen)
        if name == "head":  # a trained-looking head, not zeros
            with torch.no_grad():
                for p in module.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        root[name] = module.requires_grad_(False)
    return root


def _candidates(root: dict[str, nn.Module]) -> list[Candidate]:
    """Four children with different frozen prefixes (whole trunk, 2 blocks, stem, none)."""
    specs: list[Candidate] = []
    layouts: list[tuple[set[int], set[str], dict[str, float | bool]]] = [
        (set(), {"encoder_norm", "head"}, {}),
        (set(), {"encoderblock_2", "encoder_norm", "head"}, {"opt_nesterov": True}),
        ({1}, {"residual_adapter_1", "encoder_norm", "head"}, {"opt_lr": 0.2}),
        (set(), {"embedding", "encoderblock_1", "encoder_norm", "head"}, {"opt_momentum": 0.5}),
    ]
    for k, (adapters, own, hp) in enumerate(layouts):
        parts: list[tuple[str, nn.Module]] = []
        trainable: list[nn.Module] = []
        momentum: list[dict[str, torch.Tensor]] = []
        prefix: list[str] = []
        for name in architecture(SHAPE.depth, adapters):
            if name in own:
                if name in root:
                    module = copy.deepcopy(root[name]).requires_grad_(True)
                    gen = torch.Generator().manual_seed(k)
                    momentum.append(
                        {
                            n: torch.randn(p.shape, generator=gen) * 0.01
                            for n, p in module.named_parameters()
                        }
                    )
                else:
                    module = build_component(
                        name, SHAPE, adapter_dim=8, generator=torch.Generator().manual_seed(k)
                    )
                    momentum.append({})
                trainable.append(module)
            else:
                module = root[name]
                if len(prefix) == len(parts):
                    prefix.append(f"root/{name}")
            parts.append((name, module))
        bar = 0.4 if k == 1 else float("-inf")
        specs.append(
            Candidate(
                PathModel(parts),
                trainable,
                momentum,
                {**HP, **hp},
                lambda q, k=k: q * (1.0 - 0.01 * k),
                bar,
                tuple(prefix),
            )
        )
    return specs


def _stream(seed: int = 3) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(96, 3, 16, 16, generator=gen) * 2 - 1
    y = torch.randint(0, 4, (96,), generator=gen)
    aug = Augmenter({"ds_crop": True, "ds_flip_left_right": True, "ds_brightness_delta": 0.1})
    return iter(BatchStream(x, y, 16, seed, aug))


def _validation() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(9)
    return torch.rand(40, 3, 16, 16, generator=gen) * 2 - 1, torch.randint(
        0, 4, (40,), generator=gen
    )


@pytest.mark.parametrize("workers", [1, 3])
def test_lockstep_equals_sequential_bit_for_bit(workers: int) -> None:
    """Also with candidates trained on ``workers`` threads at once."""
    settings = TrainSettings(rounds=3, steps_per_round=5, eval_batch_size=16)
    outcomes = []
    for lockstep in (False, True):
        root = _root()
        before = {n: {k: v.clone() for k, v in m.state_dict().items()} for n, m in root.items()}
        specs = _candidates(root)
        steps: list[int] = []
        results = train_generation(
            specs,
            _stream,
            _validation(),
            settings,
            lockstep=lockstep,
            on_step=steps.append,
            workers=workers,
        )
        assert len(steps) == len(specs) * 15
        assert sorted(steps) == sorted(s for s in range(1, 16) for _ in specs)
        for n, m in root.items():  # frozen modules untouched
            assert all(torch.equal(v, before[n][k]) for k, v in m.state_dict().items())
        params = [[p.detach().clone() for m in s.trainable for p in m.parameters()] for s in specs]
        outcomes.append((results, params))
    (seq, seq_params), (lock, lock_params) = outcomes
    for (r1, m1), (r2, m2), p1, p2 in zip(seq, lock, seq_params, lock_params, strict=True):
        assert r1.quality == r2.quality and r1.score == r2.score
        assert [(r.quality, r.score, r.snapshot) for r in r1.rounds] == [
            (r.quality, r.score, r.snapshot) for r in r2.rounds
        ]
        assert r1.steps == r2.steps == 15 and r1.examples == r2.examples
        assert all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
        assert [sorted(d) for d in m1] == [sorted(d) for d in m2]
        assert all(torch.equal(d1[k], d2[k]) for d1, d2 in zip(m1, m2, strict=True) for k in d1)


def test_workers_stop_on_request_and_reject_zero() -> None:
    specs = _candidates(_root())
    calls: list[int] = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 6

    settings = TrainSettings(rounds=1, steps_per_round=5, eval_batch_size=16)
    with pytest.raises(Interrupted):
        train_generation(specs, _stream, _validation(), settings, should_stop=stop, workers=2)
    assert all(s.model.training for s in specs)
    with pytest.raises(ValueError, match="workers"):
        train_generation(specs, _stream, _validation(), settings, workers=0)


def test_engine_sizes_auto_workers_to_its_cpus(tmp_path: Path) -> None:
    engine = Engine(
        SystemStore.open(str(tmp_path)), select_device("cpu"), progress_bars=False, cpus=1
    )
    assert engine.cpu.usable_cpus() == 1
    assert engine.cpu.candidate_workers("cpu", 8) == 1  # a one-CPU request: no extra threads
    assert (
        Engine(
            SystemStore.open(str(tmp_path)), select_device("cpu"), workers=5
        ).cpu.candidate_workers("cpu", 3)
        == 3
    )  # never more than candidates
    with pytest.raises(ValueError, match="workers"):
        Engine(SystemStore.open(str(tmp_path)), select_device("cpu"), workers=0)
    gpu = DeviceChoice(torch.device("cuda"), "cuda", 1, None)  # never touched: no CUDA call
    engine = Engine(SystemStore.open(str(tmp_path)), gpu, workers=4)
    assert engine.cpu.candidate_workers(engine.device.kind, 8) == 1


def _engine(store: Path, *, lockstep: bool, workers: int | None = None) -> Engine:
    return Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        progress_bars=False,
        log=lambda _m: None,
        lockstep=lockstep,
        workers=workers,
    )


def test_engine_lockstep_publishes_the_same_task(tmp_path: Path) -> None:
    budget = BudgetConfig(
        generations=2,
        candidates=3,
        validation_rounds=2,
        steps_per_round=4,
        batch_size=16,
        max_validation_examples=64,
    )
    base = IntroduceConfig(
        task="mnist",
        dataset=DatasetConfig(source="digits", max_train_examples=256),
        store=str(tmp_path / "a"),
        budget=budget,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(preset="mu-tiny", image_size=8, max_epochs=0.25),
        device="cpu",
    )
    bootstrap_root(_engine(tmp_path / "a", lockstep=True), base)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    task = replace(
        base,
        task="parity",
        dataset=DatasetConfig(
            source="digits", max_train_examples=256, label_map={str(i): i % 2 for i in range(10)}
        ),
    )
    manifests = []
    for folder, lockstep in (("a", True), ("b", False)):
        engine = _engine(tmp_path / folder, lockstep=lockstep, workers=2 if lockstep else None)
        workers = engine.cpu.candidate_workers("cpu", 3) if engine.lockstep else 1
        assert workers == (2 if lockstep else 1)
        out = engine.introduce(replace(task, store=str(tmp_path / folder)))
        assert out.candidates_trained == 6 and all(v.ok for v in out.verifications)
        manifests.append(out.manifest)
    a, b = manifests
    for key in ("test_accuracy", "probe_sha256", "path", "score", "params", "components"):
        assert a.get(key) == b.get(key), key


def test_rounds_can_continue_for_a_subset_of_candidates() -> None:
    """Successive halving's need: after a round only some candidates go on, with the very
    bits they would have had trained to the end on their own."""
    settings = TrainSettings(rounds=2, steps_per_round=4, eval_batch_size=16)
    specs = _candidates(_root())
    with Lockstep(specs, _stream(), _validation(), settings, workers=2) as loop:
        first = loop.train_round()
        second = loop.train_round([3, 1])
        halved = loop.finish()
    assert len(first) == 4 and len(second) == 2
    assert [len(r.rounds) for r, _ in halved] == [1, 2, 1, 2]
    assert [r.steps for r, _ in halved] == [4, 8, 4, 8]
    alone = train_generation(_candidates(_root()), _stream, _validation(), settings, lockstep=False)
    for k in (1, 3):
        assert [x.quality for x in halved[k][0].rounds] == [x.quality for x in alone[k][0].rounds]
        assert second[[3, 1].index(k)] == alone[k][0].rounds[1].quality
        assert halved[k][0].score == alone[k][0].score
        assert all(
            torch.equal(a, b)
            for d1, d2 in zip(halved[k][1], alone[k][1], strict=True)
            for a, b in zip(d1.values(), d2.values(), strict=True)
        )
