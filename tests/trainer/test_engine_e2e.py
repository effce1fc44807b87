"""End to end: bootstrap a root, introduce two tasks on tiny data, and prove that every
earlier task's outputs are bit-identical afterwards; resume, CLI commands, determinism."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mutask.trainer.cli import main
from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.evolution import ROOT_TASK
from mutask.trainer.evolution import Path as EvoPath
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore, system_from_manifests
from mutask.trainer.training import Interrupted

TINY = BudgetConfig(
    generations=2,
    candidates=2,
    validation_rounds=1,
    steps_per_round=6,
    batch_size=32,
    max_validation_examples=128,
)


def cfg(store: Path, task: str, dataset: DatasetConfig, **kw: object) -> IntroduceConfig:
    base = IntroduceConfig(
        task=task,
        dataset=dataset,
        store=str(store),
        budget=TINY,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(image_size=16, max_epochs=0.25),
        device="cpu",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def engine(store: Path, **kw: object) -> Engine:
    return Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        progress_bars=False,
        log=lambda _m: None,
        **kw,
    )  # type: ignore[arg-type]


def logits_digest(eng: Engine, task: str) -> str:
    """SHA-256 of the task's logits on fixed inputs, computed from freshly loaded blobs."""
    manifest = eng.store.read_manifest(task)
    assert manifest is not None
    fresh = engine(Path(eng.store.uri.removeprefix("file://")))
    _, _, pool = fresh.load()
    model = pool.model(EvoPath.from_dict(manifest[0]["path"])).eval()
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return hashlib.sha256(model(x).numpy().tobytes()).hexdigest()


DIGITS = DatasetConfig(source="digits")
LOW = DatasetConfig(source="digits", labels=[0, 1, 2, 3, 4])
PARITY = DatasetConfig(source="digits", label_map={str(i): i % 2 for i in range(10)})


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A store with a root and two tasks, and the logits digests taken right after each.

    Shared by the module's tests: they only read it (the revisit test works on a copy)."""
    store = tmp_path_factory.mktemp("grown") / "store"
    eng = engine(store)
    bootstrap_root(eng, cfg(store, "digits", DIGITS, budget=replace(TINY, steps_per_round=10)))
    digests = {ROOT_TASK: logits_digest(eng, ROOT_TASK)}
    out = eng.introduce(cfg(store, "low", LOW))
    assert all(v.ok for v in out.verifications)
    digests["low"] = logits_digest(eng, "low")
    out = eng.introduce(cfg(store, "parity", PARITY))
    assert [v.task for v in out.verifications] == [ROOT_TASK, "low"]
    assert all(v.ok for v in out.verifications), out.verifications
    digests["parity"] = logits_digest(eng, "parity")
    return store, digests


def test_earlier_tasks_are_bit_identical_after_new_tasks(
    grown: tuple[Path, dict[str, str]],
) -> None:
    store, digests = grown
    eng = engine(store)
    for task, digest in digests.items():
        assert logits_digest(eng, task) == digest, f"{task} changed"
    assert all(v.ok for v in eng.verify())


def test_revisit_keeps_other_tasks_and_may_improve_own(
    grown: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(grown[0], store)
    digests = grown[1]
    eng = engine(store)
    before = eng.store.read_manifest("low")
    assert before is not None
    out = eng.introduce(cfg(store, "low", LOW))
    assert out.iteration == 1
    assert out.best.score is not None and before[0]["path"]["score"] is not None
    for task in (ROOT_TASK, "parity"):
        assert logits_digest(eng, task) == digests[task]
    assert out.manifest["history"][0]["iteration"] == 0
    assert len(out.manifest["history"]) == 2


def test_system_view_and_ownership(grown: tuple[Path, dict[str, str]]) -> None:
    store, _ = grown
    manifests = SystemStore.open(str(store)).manifests()
    system = system_from_manifests(manifests)
    assert system.tasks == ["low", "parity"]
    root_ids = set(system.root.component_ids)
    for task in system.tasks:
        path = system.best[task]
        # a new task never reuses the root's head, and owns its own head
        assert path.component("head") not in root_ids
        assert manifests[task]["params"]["added"] > 0
        for cid in path.component_ids:
            assert manifests[task]["components"][cid]["param_hash"]


def test_same_seed_same_evolution(tmp_path: Path) -> None:
    ids = []
    for run in ("a", "b"):
        store = tmp_path / run
        eng = engine(store)
        bootstrap_root(eng, cfg(store, "digits", DIGITS))
        out = eng.introduce(cfg(store, "low", LOW))
        hashes = [out.manifest["components"][c]["param_hash"] for c in out.best.component_ids]
        ids.append((out.best.id, out.best.hparams, hashes))
    assert ids[0] == ids[1]


def test_interrupted_run_resumes_at_next_generation(tmp_path: Path) -> None:
    store = tmp_path / "store"
    bootstrap_root(engine(store), cfg(store, "digits", DIGITS))
    calls = {"n": 0}

    def stop_in_second_generation() -> bool:
        calls["n"] += 1
        return calls["n"] > TINY.candidates * TINY.steps_per_round + 4

    with pytest.raises(Interrupted):
        engine(store, should_stop=stop_in_second_generation).introduce(cfg(store, "low", LOW))
    saved = SystemStore.open(str(store)).load_resume("low")
    assert saved is not None and saved["state"]["generation"] == 1
    logs: list[str] = []
    eng = Engine(
        SystemStore.open(str(store)), select_device("cpu"), progress_bars=False, log=logs.append
    )
    resumed = eng.introduce(cfg(store, "low", LOW))
    assert any("resumed at generation 1" in m for m in logs)
    assert SystemStore.open(str(store)).load_resume("low") is None
    # the same run uninterrupted gives the same final path
    other = tmp_path / "other"
    bootstrap_root(engine(other), cfg(other, "digits", DIGITS))
    straight = engine(other).introduce(cfg(other, "low", LOW))
    assert straight.best.id == resumed.best.id
    assert straight.best.hparams == resumed.best.hparams


def test_cli_show_evaluate_verify_export(
    grown: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, _ = grown
    assert main(["show", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "low" in out and "components" in out
    assert main(["show", "--store", str(store), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {r["task"] for r in shown["tasks"]} == {ROOT_TASK, "low", "parity"}
    assert main(["evaluate", "--store", str(store), "low"]) == 0
    assert "low" in capsys.readouterr().out
    assert main(["verify", "--store", str(store)]) == 0
    exported = tmp_path / "low.safetensors"
    assert main(["export", "low", "--store", str(store), "--out", str(exported)]) == 0
    from mutask.trainer.models import load_exported

    model = load_exported(exported).eval()
    manifest = SystemStore.open(str(store)).read_manifest("low")
    assert manifest is not None
    eng = engine(store)
    _, _, pool = eng.load()
    reference = pool.model(EvoPath.from_dict(manifest[0]["path"])).eval()
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert main(["evaluate", "--store", str(store), "nope"]) == 2  # bad input: no such task
    assert "'nope' is not published" in capsys.readouterr().err


def test_cli_introduce_bad_input_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "introduce",
            "--store",
            str(tmp_path),
            "--task",
            "x",
            "--dataset",
            "nosuch",
            "--bootstrap-root",
            "--quiet",
        ]
    )
    assert code == 2
    assert "dataset" in capsys.readouterr().err
