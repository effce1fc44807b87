"""The quality levers end to end: successive halving and the final phase spend exactly the
even split's budget, the final phase never lowers a path's validation score and trains only
its own components, heads start from the parent's head within one label space, the root
converges on its own at its data's native size, and images are never resized silently."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.evolution import ROOT_TASK
from mutask.trainer.iteration.bootstrap import bootstrap_root, stage_epochs
from mutask.trainer.iteration.budget import derived_steps, plan
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.taskdata import label_space
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore

DIGITS = DatasetConfig(source="digits")
BUDGET = BudgetConfig(
    generations=1,
    candidates=4,
    validation_rounds=3,
    steps_per_round=3,
    batch_size=16,
    max_validation_examples=96,
)


def cfg(store: Path, task: str, dataset: DatasetConfig, **kw: object) -> IntroduceConfig:
    base = IntroduceConfig(
        task=task,
        dataset=dataset,
        store=str(store),
        budget=BUDGET,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(max_epochs=0.5),
        device="cpu",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def engine(store: Path) -> Engine:
    return Engine(
        SystemStore.open(str(store)), select_device("cpu"), progress_bars=False, log=print
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits root at the data's own 8x8 (no image size given)."""
    store = tmp_path_factory.mktemp("levers") / "root"
    bootstrap_root(engine(store), cfg(store, "digits", DIGITS))
    return store


def copy_of(root: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(root, tmp_path / "store")
    return tmp_path / "store"


def test_the_root_takes_its_datas_own_size_and_records_its_label_space(root: Path) -> None:
    manifest, _ = SystemStore.open(str(root)).read_manifest(ROOT_TASK) or ({}, 0)
    assert manifest["shape"]["image_size"] == 8 and manifest["model"]["image_size"] == 8
    head = next(c for c in manifest["components"].values() if c["name"] == "head")
    assert head["label_space"] == label_space(DIGITS) == "digits|all"
    assert manifest["training"]["examples"] > 0


def test_halving_and_the_final_phase_spend_exactly_the_even_splits_budget(
    root: Path, tmp_path: Path
) -> None:
    store = copy_of(root, tmp_path)
    eng = engine(store)
    low = DatasetConfig(source="digits", labels=[0, 1, 2, 3, 4])
    even = replace(BUDGET, halving=False, final_training=False)
    spent = {}
    for name, budget in (("even", even), ("halving", BUDGET)):
        out = eng.introduce(cfg(store, f"low-{name}", low, budget=budget))
        spent[name] = out.examples
        assert out.manifest["training"]["examples"] == out.examples
        assert all(v.ok for v in out.verifications)
    total = BUDGET.generations * BUDGET.candidates * 3 * 3 * 16  # G * K * V * N * b
    assert spent["even"] == total
    # halving: 4 + 2 + 1 candidate rounds; the 5 rounds saved train the winner further
    assert plan(BUDGET, 100).search_examples == 7 * 3 * 16
    assert spent["halving"] == total == plan(BUDGET, 100).examples


def test_the_final_phase_never_lowers_the_score_and_trains_only_own_components(
    root: Path, tmp_path: Path
) -> None:
    store = copy_of(root, tmp_path)
    eng = engine(store)
    before = {c: e["param_hash"] for c, e in eng.store.manifests()[ROOT_TASK]["components"].items()}
    out = eng.introduce(
        cfg(
            store,
            "parity",
            DatasetConfig(source="digits", label_map={str(i): i % 2 for i in range(10)}),
        )
    )
    training = out.manifest["training"]
    assert out.best.quality is not None and training["search_quality"] <= out.best.quality
    assert training["final_examples"] > 0
    after = eng.store.manifests()[ROOT_TASK]["components"]
    assert {c: e["param_hash"] for c, e in after.items()} == before
    assert all(v.ok for v in eng.verify())


def _head(store: Path, task: str) -> torch.Tensor:
    eng = engine(store)
    manifest = eng.store.manifests()[task]
    _, _, pool = eng.load()
    cid = dict(manifest["path"]["components"])["head"]
    return pool.get(cid).state_dict()["weight"].flatten()


def test_a_head_starts_from_the_roots_head_only_within_its_label_space(
    root: Path, tmp_path: Path
) -> None:
    store = copy_of(root, tmp_path)
    eng = engine(store)
    tiny = replace(BUDGET, candidates=1, validation_rounds=1, steps_per_round=1)
    eng.introduce(cfg(store, "same", DIGITS, budget=tiny))  # the root's own label space
    relabelled = DatasetConfig(source="digits", labels=list(range(10)))  # another one
    eng.introduce(cfg(store, "other", relabelled, budget=tiny))
    root_head = _head(store, ROOT_TASK)
    cos = torch.nn.functional.cosine_similarity
    assert cos(_head(store, "same"), root_head, dim=0) > 0.9  # a clone, one step trained
    assert cos(_head(store, "other"), root_head, dim=0) < 0.5  # a fresh head
    assert eng.store.manifests()["same"]["path"]["components"][-1][1].startswith("same~")


def test_images_are_never_resized_silently(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = copy_of(root, tmp_path)
    mnist = DatasetConfig(source="mnist", max_train_examples=64, test_split="test[:64]")
    tiny = replace(BUDGET, candidates=1, validation_rounds=1, steps_per_round=1)
    engine(store).introduce(cfg(store, "mnist", mnist, budget=tiny), verify=False)
    assert "task mnist: its 28x28 images are resized to 8x8" in capsys.readouterr().err


def test_the_root_stops_training_once_validation_stops_improving(tmp_path: Path) -> None:
    assert stage_epochs(12) == [1, 2, 4, 5]
    assert stage_epochs(0.5) == [0.5]
    store = tmp_path / "store"
    easy = DatasetConfig(source="digits", labels=[0, 1], max_train_examples=128)
    capped = cfg(store, "digits", easy, model=ModelConfig(max_epochs=500))
    events: list[Mapping[str, object]] = []
    lines: list[str] = []
    eng = Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        sinks=[events.append],
        progress_bars=False,
        log=lines.append,
    )
    out = bootstrap_root(eng, capped)
    assert out["training"]["examples"] < 100 * 128  # converged long before the cap
    # progress: one event and one line per stage, then the reason it stopped
    stages = [e for e in events if e.get("event") == "root_stage"]
    assert [e["stage"] for e in stages] == list(range(1, len(stages) + 1))
    assert 2 <= len(stages) < len(stage_epochs(500))
    assert sum(line.startswith("root stage ") for line in lines) == len(stages)
    assert any(line.startswith("root converged: stage") for line in lines)
    best = [float(e["best_accuracy"]) for e in stages]  # type: ignore[arg-type]
    assert best == sorted(best)  # the best snapshot so far never gets worse


def test_steps_per_round_come_from_the_epochs_budget() -> None:
    budget = BudgetConfig()  # 2 x 8 x 4 rounds, 4 epochs
    assert derived_steps(budget, 60_000) == 49  # an epoch counts at most 50,000 examples
    assert derived_steps(budget, 1000) == 10  # at least MIN_STEPS_PER_ROUND
    assert derived_steps(replace(budget, steps_per_round=7), 60_000) == 7
    p = plan(budget, 60_000)
    assert p.final is not None and p.final.rounds == 8
    assert p.examples <= 2 * 8 * 4 * 49 * 64
