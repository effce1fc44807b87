"""The bad-input table: every refusal exits 2 with one line naming the field and the value,
no traceback, and the store exactly as it was (nothing written, not even a lease).

Cases run in process through :func:`mutask.trainer.cli.main` (the table stays fast); a few
run as real subprocesses at the end. Placeholders in an argv: ``{S}`` a store with a root and
a task (snapshotted before, compared after), ``{E}`` a store path that must stay absent,
``{F}`` an existing regular file, ``{npz:NAME}`` a bad dataset file (errors_testutil), ``{cfg}``
the case's config file. Bad dataset files and sources: test_bad_data.py.
"""

from __future__ import annotations

import copy
import socket
import subprocess
import sys
from typing import Any

import pytest
import torch
from errors_testutil import (
    BOOT,
    INTRO,
    TINY_FLAGS,
    Places,
    cli,
    error_line,
    refused,
    snapshot,
    write_config,
)

from mutask.contract import ExitCode

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")


def case(name: str, argv: list[str], text: str, marks: Any = ()) -> Any:
    return pytest.param(argv, text, id=name, marks=marks)


# (id, argv, text the error line must contain)
CLI_CASES: list[Any] = [  # pytest.param(argv, text, id=...)
    case("task-uppercase", [*INTRO, "--task", "Bad_Name"], "task='Bad_Name'"),
    case("task-empty", [*INTRO, "--task", ""], "--task"),
    case("task-too-long", [*INTRO, "--task", "a" * 64], "task='aaaa"),
    case("task-private-only", [*INTRO, "--task", "private:"], "task='private:'"),
    case("task-leading-dash", [*INTRO, "--task", "-x"], "--task"),
    case("task-trailing-dot", [*INTRO, "--task", "x."], "task='x.'"),
    case("task-slash", [*INTRO, "--task", "a/b"], "task='a/b'"),
    case("task-root", [*INTRO, "--task", "__root__"], "task='__root__'"),
    case("generations-0", [*INTRO, "--generations", "0"], "budget.generations=0"),
    case("generations-1001", [*INTRO, "--generations", "1001"], "budget.generations=1001"),
    case("generations-negative", [*INTRO, "--generations", "-3"], "budget.generations=-3"),
    case("generations-text", [*INTRO, "--generations", "two"], "argument --generations"),
    case("candidates-0", [*INTRO, "--candidates", "0"], "budget.candidates=0"),
    case("candidates-257", [*INTRO, "--candidates", "257"], "budget.candidates=257"),
    case("rounds-0", [*INTRO, "--rounds", "0"], "budget.validation_rounds=0"),
    case("rounds-101", [*INTRO, "--rounds", "101"], "budget.validation_rounds=101"),
    case("steps-negative", [*INTRO, "--steps", "-1"], "budget.steps_per_round=-1"),
    case("steps-1e12", [*INTRO, "--steps", str(10**12)], "budget.steps_per_round=1000000000000"),
    case("steps-float", [*INTRO, "--steps", "1.5"], "argument --steps"),
    case("batch-0", [*INTRO, "--batch-size", "0"], "budget.batch_size=0"),
    case("batch-1e9", [*INTRO, "--batch-size", str(10**9)], "budget.batch_size=1000000000"),
    case("batch-negative", [*INTRO, "--batch-size", "-64"], "budget.batch_size=-64"),
    case("size-scale-0", [*INTRO, "--size-scale", "0"], "search.size_scale=0.0"),
    case("size-scale-1.5", [*INTRO, "--size-scale", "1.5"], "search.size_scale=1.5"),
    case("size-scale-negative", [*INTRO, "--size-scale", "-0.5"], "search.size_scale=-0.5"),
    case("size-scale-nan", [*INTRO, "--size-scale", "nan"], "search.size_scale=nan"),
    case("size-scale-inf", [*INTRO, "--size-scale", "inf"], "search.size_scale=inf"),
    case("size-scale-text", [*INTRO, "--size-scale", "big"], "argument --size-scale"),
    case("seed-negative", [*INTRO, "--seed", "-1"], "seed=-1"),
    case("seed-2**31", [*INTRO, "--seed", str(2**31)], "seed=2147483648"),
    case("seed-text", [*INTRO, "--seed", "x"], "argument --seed"),
    case("device-tpu", [*INTRO, "--device", "tpu"], "device='tpu'"),
    case("device-gpu", [*INTRO, "--device", "gpu"], "device='gpu'"),
    case("device-cuda-letter", [*INTRO, "--device", "cuda:x"], "device='cuda:x'"),
    case("device-cuda", [*INTRO, "--device", "cuda"], "device='cuda'", marks=NO_CUDA),
    case("device-cuda-0", [*INTRO, "--device", "cuda:0"], "device='cuda:0'", marks=NO_CUDA),
    case("device-xla-no-pjrt", [*INTRO, "--device", "xla"], "device='xla'"),
    case("precision-fp16", [*INTRO, "--precision", "fp16"], "argument --precision"),
    case("metrics-port-70000", [*INTRO, "--metrics-port", "70000"], "metrics_port=70000"),
    case("metrics-port-negative", [*INTRO, "--metrics-port", "-1"], "metrics_port=-1"),
    case("workers-0", [*INTRO, "--workers", "0"], "workers=0"),
    case("workers-5000", [*INTRO, "--workers", "5000"], "workers=5000"),
    case("labels-empty", [*INTRO, "--labels", ""], "--labels=''"),
    case("labels-one-class", [*INTRO, "--labels", "4"], "dataset.labels=[4]"),
    case("labels-repeated", [*INTRO, "--labels", "1,1"], "dataset.labels=[1, 1]"),
    case("labels-out-of-range", [*INTRO, "--labels", "0,99"], "dataset.labels=[0, 99]"),
    case("labels-negative", [*INTRO, "--labels=-1,2"], "dataset.labels=[-1, 2]"),
    case("labels-not-ints", [*INTRO, "--labels", "1,x"], "--labels='1,x'"),
    case("labels-trailing-comma", [*INTRO, "--labels", "1,2,"], "--labels='1,2,'"),
    case("labels-spaces-only", [*INTRO, "--labels", " "], "--labels=' '"),
    case("transform-rot45", [*INTRO, "--transform", "rot45"], "dataset.transform='rot45'"),
    case("transform-empty", [*INTRO, "--transform", ""], "dataset.transform=''"),
    case("transform-case", [*INTRO, "--transform", "ROT90"], "dataset.transform='ROT90'"),
    case("dataset-s3", [*INTRO, "--dataset", "s3://b/x.npz"], "dataset.source='s3://b/x.npz'"),
    case(
        "dataset-http", [*INTRO, "--dataset", "http://x/y.npz"], "dataset.source='http://x/y.npz'"
    ),
    case("dataset-https", [*INTRO, "--dataset", "https://x/y.npz"], "dataset.source='https://x/"),
    case("dataset-unknown-name", [*INTRO, "--dataset", "nosuch"], "dataset.source='nosuch'"),
    case("dataset-missing-file", [*INTRO, "--dataset", "/nonexistent/x.npz"], "dataset.source="),
    case("dataset-empty", [*INTRO, "--dataset", ""], "dataset.source=''"),
    case("dataset-blank", [*INTRO, "--dataset", "  "], "dataset.source='  '"),
    case("image-size-100000", [*INTRO, "--image-size", "100000"], "model.image_size=100000"),
    case("image-size-2", [*INTRO, "--image-size", "2"], "model.image_size=2"),
    case("image-size-other-than-root", [*INTRO, "--image-size", "32"], "model.image_size=32"),
    case("preset-other-than-root", [*INTRO, "--preset", "mu-small"], "model.preset='mu-small'"),
    case("preset-bad-name", [*INTRO, "--preset", "Bad!"], "model.preset='Bad!'"),
    case("weights-on-existing-root", [*INTRO, "--weights", "{F}"], "model.weights="),
    case("bootstrap-unknown-preset", [*BOOT, "--preset", "nosuch"], "model.preset='nosuch'"),
    case("bootstrap-image-not-patches", [*BOOT, "--image-size", "18"], "model.image_size=18"),
    case(
        "bootstrap-b16-at-8px", [*BOOT, "--preset", "b16", "--image-size", "8"], "model.image_size"
    ),
    case(
        "bootstrap-missing-weights",
        [*BOOT, "--weights", "/nonexistent.safetensors"],
        "model.weights=",
    ),
    case(
        "no-root-no-bootstrap",
        ["introduce", "--store", "{E}", "--task", "t", *TINY_FLAGS],
        "--bootstrap-root",
    ),
    case("config-missing", ["introduce", "--config", "/nonexistent/c.json"], "--config="),
    case("config-is-a-folder", ["introduce", "--config", "{E}/.."], "--config="),
    case("unknown-flag", [*INTRO, "--generationz", "3"], "unrecognized arguments"),
    case("unknown-command", ["introduse"], "invalid choice"),
]

BASE: dict[str, Any] = {
    "task": "newt",
    "store": "{S}",
    "device": "cpu",
    "budget": {"generations": 1, "candidates": 2, "validation_rounds": 1, "steps_per_round": 5},
}
# (id, changes merged into BASE (None deletes a key) or a raw file text, error-line text)
CONFIG_CASES: list[tuple[str, Any, str]] = [
    ("not-json", "{task: newt", "<config>="),
    ("a-list", "[1, 2]", "<config>=[1, 2]"),
    ("empty-file", "", "<config>=''"),
    ("unknown-top-field", {"extra": 1}, "extra=1: unknown field"),
    ("unknown-budget-field", {"budget": {"generationz": 3}}, "budget.generationz=3"),
    ("unknown-dataset-field", {"dataset": {"lables": [1]}}, "dataset.lables"),
    ("missing-task", {"task": None}, "task"),
    ("task-number", {"task": 7}, "task=7"),
    ("budget-not-object", {"budget": 5}, "budget=5"),
    ("generations-string", {"budget": {"generations": "3"}}, "budget.generations='3'"),
    ("generations-bool", {"budget": {"generations": True}}, "budget.generations=True"),
    ("generations-float", {"budget": {"generations": 2.5}}, "budget.generations=2.5"),
    ("steps-1e12", {"budget": {"steps_per_round": 10**12}}, "budget.steps_per_round="),
    ("batch-1e9", {"budget": {"batch_size": 10**9}}, "budget.batch_size=1000000000"),
    ("max-val-0", {"budget": {"max_validation_examples": 0}}, "budget.max_validation_examples=0"),
    ("max-val-1e9", {"budget": {"max_validation_examples": 10**9}}, "budget.max_validation_"),
    ("size-scale-2", {"search": {"size_scale": 2}}, "search.size_scale=2.0"),
    ("size-scale-string", {"search": {"size_scale": "0.5"}}, "search.size_scale='0.5'"),
    ("population-cap-0", {"search": {"population_cap": 0}}, "search.population_cap=0"),
    ("population-cap-5000", {"search": {"population_cap": 5000}}, "search.population_cap=5000"),
    ("adapters-string", {"search": {"adapters": "yes"}}, "search.adapters='yes'"),
    ("seed-null", {"seed": None}, "seed=None"),
    ("seed-bool", {"seed": True}, "seed=True"),
    ("seed-negative", {"seed": -5}, "seed=-5"),
    ("device-number", {"device": 5}, "device=5"),
    ("device-unknown", {"device": "npu"}, "device='npu'"),
    ("precision-fp8", {"precision": "fp8"}, "precision='fp8'"),
    ("metrics-port-99999", {"metrics_port": 99999}, "metrics_port=99999"),
    ("workers-0", {"workers": 0}, "workers=0"),
    ("workers-string", {"workers": "2"}, "workers='2'"),
    ("store-number", {"store": 5}, "store=5"),
    ("store-empty", {"store": ""}, "store=''"),
    ("store-s3", {"store": "s3://bucket/x"}, "store='s3://bucket/x'"),
    ("store-root", {"store": "file:///"}, "store='file:///'"),
    ("agent-id-number", {"agent_id": 5}, "agent_id=5"),
    ("bootstrap-root-string", {"bootstrap_root": "yes"}, "bootstrap_root='yes'"),
    ("image-size-100000", {"model": {"image_size": 100000}}, "model.image_size=100000"),
    ("image-size-other-than-root", {"model": {"image_size": 32}}, "model.image_size=32"),
    ("preset-other-than-root", {"model": {"preset": "mu-small"}}, "model.preset='mu-small'"),
    ("labels-empty-list", {"dataset": {"labels": []}}, "dataset.labels=[]"),
    ("labels-one", {"dataset": {"labels": [4]}}, "dataset.labels=[4]"),
    ("labels-repeated", {"dataset": {"labels": [1, 1]}}, "dataset.labels=[1, 1]"),
    ("labels-out-of-range", {"dataset": {"labels": [0, 99]}}, "dataset.labels=[0, 99]"),
    ("labels-string-item", {"dataset": {"labels": [1, "2"]}}, "dataset.labels[1]='2'"),
    ("labels-huge", {"dataset": {"labels": [0, 10**9]}}, "dataset.labels=[0, 1000000000]"),
    (
        "labels-and-label-map",
        {"dataset": {"labels": [0, 1], "label_map": {"0": 0, "1": 1}}},
        "dataset.labels",
    ),
    ("label-map-empty", {"dataset": {"label_map": {}}}, "dataset.label_map={}"),
    ("label-map-key-a", {"dataset": {"label_map": {"a": 0, "1": 1}}}, "dataset.label_map="),
    ("label-map-key-negative", {"dataset": {"label_map": {"-1": 0, "1": 1}}}, "dataset.label_map="),
    (
        "label-map-key-out-of-range",
        {"dataset": {"label_map": {"99": 0, "1": 1}}},
        "dataset.label_map=",
    ),
    ("label-map-one-class", {"dataset": {"label_map": {"1": 0, "2": 0}}}, "dataset.label_map="),
    ("label-map-not-dense", {"dataset": {"label_map": {"1": 0, "2": 2}}}, "dataset.label_map="),
    (
        "label-map-negative-target",
        {"dataset": {"label_map": {"1": -1, "2": 0}}},
        "dataset.label_map=",
    ),
    ("label-map-string-target", {"dataset": {"label_map": {"1": "x"}}}, "dataset.label_map.1='x'"),
    ("transform-rot45", {"dataset": {"transform": "rot45"}}, "dataset.transform='rot45'"),
    ("split-garbage-bound", {"dataset": {"train_split": "train[abc]"}}, "dataset.train_split="),
    ("split-empty", {"dataset": {"validation_split": ""}}, "dataset.validation_split=''"),
    ("split-150-percent", {"dataset": {"test_split": "test[:150%]"}}, "dataset.test_split="),
    ("split-fractional-count", {"dataset": {"train_split": "train[1.5:]"}}, "dataset.train_split="),
    ("split-two-colons", {"dataset": {"train_split": "train[1:2:3]"}}, "dataset.train_split="),
    ("split-unclosed", {"dataset": {"train_split": "train[:10"}}, "dataset.train_split="),
    ("split-plus-nothing", {"dataset": {"train_split": "train+"}}, "dataset.train_split="),
    ("split-unknown-base", {"dataset": {"train_split": "nosuch[:10]"}}, "dataset.train_split="),
    ("split-overlap", {"dataset": {"validation_split": "train[80%:]"}}, "dataset.train_split="),
    ("split-empty-selection", {"dataset": {"test_split": "test[5:5]"}}, "dataset.test_split="),
    ("max-train-0", {"dataset": {"max_train_examples": 0}}, "dataset.max_train_examples=0"),
    ("max-train-string", {"dataset": {"max_train_examples": "5"}}, "dataset.max_train_examples="),
    ("source-s3", {"dataset": {"source": "s3://b/x.npz"}}, "dataset.source='s3://b/x.npz'"),
    ("source-null", {"dataset": {"source": None}}, "dataset.source=None"),
]

# store URIs refused by every command, before anything is touched
STORE_URIS = [
    ("empty", "", "store=''"),
    ("blank", "  ", "store='  '"),
    ("file-root", "file:///", "store='file:///'"),
    ("plain-root", "/", "store='/'"),
    ("root-via-dots", "/tmp/../", "store='/tmp/../'"),
    ("file-dots", "file:///tmp/../x", "store='file:///tmp/../x'"),
    ("file-relative", "file:relative/x", "store='file:relative/x'"),
    ("file-host", "file://host/x", "store='file://host/x'"),
    ("file-query", "file:///tmp/x?y=1", "store='file:///tmp/x?y=1'"),
    ("s3", "s3://bucket/x", "store='s3://bucket/x'"),
    ("http", "http://example.com/x", "store='http://example.com/x'"),
    ("gs-no-bucket", "gs://", "store='gs://'"),
    ("gs-bad-bucket", "gs://B_ad/x", "store='gs://B_ad/x'"),
    ("gs-short-bucket", "gs://ab/x", "store='gs://ab/x'"),
    ("gs-dotdot", "gs://bucket/a/../b", "store='gs://bucket/a/../b'"),
    ("gs-empty-segment", "gs://bucket/a//b", "store='gs://bucket/a//b'"),
    ("existing-file", "{F}", "store="),
    ("newline", "a\nb", "store="),
]
STORE_COMMANDS = {
    "introduce": ["introduce", "--task", "newt", *TINY_FLAGS, "--store"],
    "show": ["show", "--store"],
    "verify": ["verify", "--device", "cpu", "--store"],
    "gc": ["gc", "--store"],
    "evaluate": ["evaluate", "--device", "cpu", "--store"],
    "export": ["export", "low", "--store"],
    "demo": ["demo", "--quick", "--fresh", "--quiet", "--report", "{E}/r", "--store"],
}

# other commands on a good store
COMMAND_CASES = [
    ("verify-unknown-task", ["verify", "--store", "{S}", "--device", "cpu", "nope"], "'nope'"),
    ("evaluate-unknown-task", ["evaluate", "--store", "{S}", "--device", "cpu", "nope"], "'nope'"),
    ("export-unknown-task", ["export", "nope", "--store", "{S}", "--device", "cpu"], "'nope'"),
    ("export-on-empty-store", ["export", "low", "--store", "{E}"], "'low'"),
    (
        "gc-negative-grace",
        ["gc", "--store", "{S}", "--grace-seconds", "-1"],
        "--grace-seconds=-1.0",
    ),
    ("gc-nan-grace", ["gc", "--store", "{S}", "--grace-seconds", "nan"], "--grace-seconds=nan"),
    ("gc-text-grace", ["gc", "--store", "{S}", "--grace-seconds", "x"], "argument --grace-seconds"),
    ("evaluate-bad-split", ["evaluate", "--store", "{S}", "--split", "train"], "argument --split"),
    ("verify-bad-device", ["verify", "--store", "{S}", "--device", "tpu"], "device='tpu'"),
    ("evaluate-seed-text", ["evaluate", "--store", "{S}", "--seed", "x"], "argument --seed"),
    ("demo-fresh-on-gcs", ["demo", "--fresh", "--store", "gs://bucket/x"], "--fresh="),
]


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None and key != "source" and key != "seed":
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("argv", "text"), CLI_CASES)
def test_bad_flags(argv: list[str], text: str, places: Places) -> None:
    refused(argv, places, text)


@pytest.mark.parametrize(
    ("name", "changes", "text"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_config_files(name: str, changes: Any, text: str, places: Places) -> None:
    doc = changes if isinstance(changes, str) else _merge(BASE, changes)
    if isinstance(doc, dict) and isinstance(doc.get("store"), str):
        doc["store"] = places.fill(doc["store"])
    config = write_config(places.tmp / "config.json", doc)
    refused(["introduce", "--config", str(config)], places, text)


@pytest.mark.parametrize("command", sorted(STORE_COMMANDS))
@pytest.mark.parametrize(("name", "uri", "text"), STORE_URIS, ids=[c[0] for c in STORE_URIS])
def test_bad_store_uris(command: str, name: str, uri: str, text: str, places: Places) -> None:
    refused([*STORE_COMMANDS[command], uri], places, text)


@pytest.mark.parametrize(("name", "argv", "text"), COMMAND_CASES, ids=[c[0] for c in COMMAND_CASES])
def test_bad_command_inputs(name: str, argv: list[str], text: str, places: Places) -> None:
    refused(argv, places, text)


def test_a_busy_metrics_port(places: Places) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused([*INTRO, "--metrics-port", str(port)], places, f"metrics_port={port}")


def test_debug_shows_the_traceback_too(places: Places) -> None:
    code, _, err = cli([*[places.fill(a) for a in INTRO], "--seed", "-1", "--debug"])
    assert (
        code == 2
        and "Traceback" in err
        and error_line(err).endswith("must be an integer in 0..2,147,483,647")
    )


def test_an_internal_error_is_one_line_too(places: Places, monkeypatch: pytest.MonkeyPatch) -> None:
    from mutask.trainer import commands

    def broken(_args: object) -> int:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(commands.COMMANDS, "show", broken)
    code, _, err = cli(["show", "--store", str(places.store)])
    assert code == ExitCode.FAILED and "Traceback" not in err
    assert "internal error: ZeroDivisionError: boom" in error_line(err) and "--debug" in err


SUBPROCESS_CASES = [
    (["introduce", "--store", "s3://bucket/x", "--task", "newt"], "store='s3://bucket/x'"),
    (["introduce", "--store", "file:///", "--task", "newt"], "store='file:///'"),
    (["introduce", "--store", "{S}", "--task", "newt", "--seed", "-1"], "seed=-1"),
    (["introduce", "--store", "{S}", "--task", "newt", "--labels", "4"], "dataset.labels=[4]"),
    (["verify", "--store", "{S}", "nope"], "'nope'"),
    (["gc", "--store", "{S}", "--grace-seconds", "-1"], "--grace-seconds=-1.0"),
]


@pytest.mark.parametrize(
    ("argv", "text"),
    SUBPROCESS_CASES,
    ids=[" ".join(c[0][:2] + c[0][-2:]) for c in SUBPROCESS_CASES],
)
def test_bad_inputs_as_a_real_process(argv: list[str], text: str, places: Places) -> None:
    before = snapshot(places.store)
    proc = subprocess.run(
        [sys.executable, "-m", "mutask.trainer.cli", *[places.fill(a) for a in argv]],
        capture_output=True,
        text=True,
        cwd=places.tmp,
    )
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert text in error_line(proc.stderr)
    assert snapshot(places.store) == before
    assert not list(places.tmp.glob("tasks")), "wrote into the working directory"
