"""`mutask introduce --dataset <folder | shards | Hugging Face>` trains, publishes and
verifies on each, streamed; a streamed introduction equals the cached one, and a streamed
run killed mid-generation resumes to the same result."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from data_files import write_folder, write_hf, write_shards

from mutask.trainer.cli import main
from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, SearchConfig
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import Interrupted

TINY = ["--generations", "1", "--candidates", "2", "--rounds", "1", "--steps", "3",
        "--batch-size", "8", "--quiet"]  # fmt: skip
BUDGET = BudgetConfig(
    generations=2, candidates=2, validation_rounds=1, steps_per_round=3, batch_size=8
)


@pytest.fixture(scope="module")
def rooted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with a root bootstrapped on digits (tiny budget), to copy per test."""
    store = tmp_path_factory.mktemp("rooted") / "store"
    code = main(["introduce", "--store", str(store), "--task", "digits", "--dataset",
                 "digits", "--bootstrap-root", *TINY])  # fmt: skip
    assert code == 0
    return store


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("datasets")
    write_folder(root / "pets", {"train": 12, "test": 4}, size=(20, 20), fmt="JPEG")
    write_shards(root / "shards", "train", 40, per_shard=16)
    write_shards(root / "shards", "test", 12, seed=1)
    write_hf(root / "hf", {"train": 36, "validation": 8, "test": 10})
    return {
        "folder": str(root / "pets"),
        "shards-folder": str(root / "shards"),
        "hf": str(root / "hf"),
    }


@pytest.mark.parametrize("kind", ["folder", "shards-folder", "hf"])
def test_introduce_streams_each_kind_of_dataset(
    rooted: Path,
    datasets: dict[str, str],
    kind: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"
    shutil.copytree(rooted, store)
    monkeypatch.setenv("MUTASK_DATA_CACHE_MB", "0")  # stream, however small
    monkeypatch.setenv("MUTASK_DATA_WORKERS", "2")
    task = f"pets-{kind}"
    code = main(["introduce", "--store", str(store), "--task", task, "--dataset",
                 datasets[kind], *TINY])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "streamed by 2 loader worker(s)" in err
    manifest = SystemStore.open(str(store)).read_manifest(task)
    assert manifest is not None
    doc, _ = manifest
    assert doc["dataset"]["source"] == datasets[kind] and doc["num_classes"] == 3
    assert 0.0 <= doc["test_accuracy"] <= 1.0
    assert main(["verify", "--store", str(store)]) == 0  # re-measured, streamed, bit-exact


def test_a_bad_dataset_exits_2_naming_the_file(
    rooted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_folder(tmp_path / "pets", {"train": 6, "test": 2})
    (tmp_path / "pets" / "train" / "yak").mkdir()
    code = main(["introduce", "--store", str(rooted), "--task", "bad", "--dataset",
                 str(tmp_path / "pets"), *TINY])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"class folder {tmp_path / 'pets' / 'train' / 'yak'} has no images" in err
    assert "Traceback" not in err


def _cfg(store: Path, source: str) -> IntroduceConfig:
    return IntroduceConfig(
        task="pets",
        dataset=DatasetConfig(source=source),
        store=str(store),
        budget=BUDGET,
        search=SearchConfig(size_scale=0.9),
        device="cpu",
    )


def _engine(store: Path, **kw: object) -> Engine:
    return Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        progress_bars=False,
        log=lambda _m: None,
        **kw,
    )  # type: ignore[arg-type]


def test_streamed_equals_cached_and_a_killed_streamed_run_resumes_the_same(
    rooted: Path, datasets: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores = {name: tmp_path / name for name in ("cached", "streamed", "killed")}
    for store in stores.values():
        shutil.copytree(rooted, store)
    source = datasets["folder"]
    cached = _engine(stores["cached"]).introduce(_cfg(stores["cached"], source))
    monkeypatch.setenv("MUTASK_DATA_CACHE_MB", "0")
    streamed = _engine(stores["streamed"]).introduce(_cfg(stores["streamed"], source))
    assert streamed.best.id == cached.best.id and streamed.best.hparams == cached.best.hparams
    assert streamed.manifest["test_accuracy"] == cached.manifest["test_accuracy"]
    assert streamed.best.quality == cached.best.quality
    calls = {"n": 0}

    def stop_in_second_generation() -> bool:  # killed mid-way through generation 2
        calls["n"] += 1
        return calls["n"] > BUDGET.candidates * BUDGET.steps_per_round + 2

    cfg = _cfg(stores["killed"], source)
    with pytest.raises(Interrupted):
        _engine(stores["killed"], should_stop=stop_in_second_generation).introduce(cfg)
    resumed = _engine(stores["killed"]).introduce(replace(cfg))
    assert resumed.best.id == streamed.best.id and resumed.best.hparams == streamed.best.hparams
    assert resumed.manifest["test_accuracy"] == streamed.manifest["test_accuracy"]
