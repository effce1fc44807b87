"""`mutask serve` over a real store, talked to by a stock OIP client (tritonclient) and by
plain HTTP: health, metadata, inference in JSON and binary, classification, versions, the
answers bit-identical to the trainer's own forward pass, and batching under concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from serve_support import (
    IMAGE_SIZE,
    TASKS,
    Served,
    sample_images,
    start_server,
    stop_server,
    trainer_logits,
)

from mutask.trainer.data.arrays import ImageSplit
from mutask.trainer.data.tensors import prepare
from mutask.trainer.store.system_store import SystemStore


@pytest.fixture(scope="module")
def client(server: Served) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.hostport)


def test_health_and_server_metadata(server: Served, client: httpclient.InferenceServerClient):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "mutask"
    assert {"binary_tensor_data", "classification"} <= set(meta["extensions"])
    index = client.get_model_repository_index()
    assert sorted(m["name"] for m in index) == sorted(TASKS)
    assert all(m["state"] == "READY" for m in index)


def test_every_task_is_a_model_versioned_by_its_iteration(
    client: httpclient.InferenceServerClient, grown_store: Path
) -> None:
    manifests = SystemStore.open(str(grown_store)).manifests()
    for task in TASKS:
        version = str(manifests[task]["iteration"])
        assert client.is_model_ready(task)
        assert client.is_model_ready(task, version)
        assert not client.is_model_ready(task, str(int(version) + 1))
        meta = client.get_model_metadata(task, version)
        assert meta["name"] == task and meta["versions"] == [version]
        images = next(i for i in meta["inputs"] if i["name"] == "images")
        assert images == {"name": "images", "datatype": "FP32", "shape": [-1, 3, 16, 16]}
        logits = next(o for o in meta["outputs"] if o["name"] == "logits")
        assert logits["shape"] == [-1, manifests[task]["num_classes"]]
        assert meta["parameters"]["path"] == manifests[task]["path"]["id"]
    low = client.get_model_metadata("low")["parameters"]["class_names"]
    assert low == ["0", "1", "2", "3", "4"]
    parity = client.get_model_metadata("private:parity")["parameters"]["class_names"]
    assert parity == ["0|2|4|6|8", "1|3|5|7|9"]


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_infer_is_bit_identical_to_the_trainer(
    client: httpclient.InferenceServerClient, grown_store: Path, binary: bool
) -> None:
    images = sample_images(5, seed=1)
    for task in TASKS:
        inp = httpclient.InferInput("images", list(images.shape), "FP32")
        inp.set_data_from_numpy(images, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("logits", binary_data=binary),
            httpclient.InferRequestedOutput("label", binary_data=binary),
        ]
        result = client.infer(task, [inp], outputs=outputs, request_id=f"r-{task}")
        logits = result.as_numpy("logits")
        expected = trainer_logits(grown_store, task, images)
        assert logits.dtype == np.float32 and logits.shape == expected.shape
        assert np.array_equal(logits, expected), task  # bit for bit
        assert np.array_equal(result.as_numpy("label"), expected.argmax(1))
        response = result.get_response()
        assert response["id"] == f"r-{task}" and response["model_name"] == task


def test_default_outputs_are_binary_for_tritonclient(
    client: httpclient.InferenceServerClient,
) -> None:
    images = sample_images(2)
    inp = httpclient.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    result = client.infer("low", [inp])  # no outputs named: every output, binary
    assert result.as_numpy("logits").shape == (2, 5)
    assert result.as_numpy("label").shape == (2,)
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])


def test_classification_extension_names_the_classes(
    client: httpclient.InferenceServerClient,
) -> None:
    images = sample_images(3, seed=2)
    inp = httpclient.InferInput("images", list(images.shape), "FP32")
    inp.set_data_from_numpy(images)
    out = httpclient.InferRequestedOutput("logits", class_count=2)
    top = client.infer("private:parity", [inp], outputs=[out]).as_numpy("logits")
    plain = httpclient.InferRequestedOutput("logits")
    logits = client.infer("private:parity", [inp], outputs=[plain]).as_numpy("logits")
    assert top.shape == (3, 2)
    for row, scores in zip(top, logits, strict=True):
        first = row[0].decode().split(":")
        assert int(first[1]) == scores.argmax()
        assert first[2] == ["0|2|4|6|8", "1|3|5|7|9"][scores.argmax()]
        assert float(first[0]) == pytest.approx(scores.max(), abs=1e-5)


def test_plain_json_and_versioned_route(server: Served, grown_store: Path) -> None:
    images = sample_images(2, seed=3)
    logits = server.infer_json("low", images)
    assert np.array_equal(logits, trainer_logits(grown_store, "low", images))
    doc = {
        "id": "v",
        "inputs": [
            {"name": "images", "datatype": "FP32", "shape": [2, 3, 16, 16], "data": images.tolist()}
        ],  # nested data is accepted too
    }
    r = server.post("/v2/models/low/versions/0/infer", doc)
    assert r.status == 200, r.body
    body = r.json()
    assert body["model_version"] == "0" and body["id"] == "v"
    got = {o["name"]: o for o in body["outputs"]}
    assert np.array_equal(np.asarray(got["logits"]["data"], np.float32).reshape(2, 5), logits)
    assert got["label"]["datatype"] == "INT64"


def test_pixels_are_prepared_as_the_trainer_prepares_them(server: Served) -> None:
    gen = np.random.default_rng(0)
    pixels = gen.integers(0, 256, size=(3, 8, 8, 1), dtype=np.uint8)
    r = server.post(
        "/v2/models/low/infer",
        {
            "inputs": [
                {
                    "name": "pixels",
                    "datatype": "UINT8",
                    "shape": [3, 8, 8, 1],
                    "data": pixels.reshape(-1).tolist(),
                }
            ],
            "outputs": [{"name": "logits"}],
        },
    )
    assert r.status == 200, r.body
    via_pixels = np.asarray(r.json()["outputs"][0]["data"], np.float32).reshape(3, 5)
    images, _ = prepare(ImageSplit(pixels, np.zeros(3, np.int64)), IMAGE_SIZE)
    assert np.array_equal(via_pixels, server.infer_json("low", images.numpy()))


def test_concurrent_requests_for_several_tasks_are_batched(
    grown_store: Path, tmp_path: Path
) -> None:
    """A long batch window: concurrent requests land in shared windows (metrics say so) and
    each answer matches its task's own forward pass up to float rounding."""
    served = start_server(["--store", str(grown_store)], tmp_path, "--max-wait-ms", "300")
    try:
        jobs = [(TASKS[i % 3], sample_images(1 + i % 3, seed=10 + i)) for i in range(18)]
        with ThreadPoolExecutor(len(jobs)) as pool:
            answers = list(pool.map(lambda j: served.infer_json(*j), jobs))
        for (task, images), logits in zip(jobs, answers, strict=True):
            expected = trainer_logits(grown_store, task, images)
            np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
        metrics = served.get("/metrics").body.decode()
        windows = _value(metrics, "mutask_serve_window_tasks_count")
        tasks_total = _value(metrics, "mutask_serve_window_tasks_sum")
        assert windows < len(jobs), "no two requests shared a window"
        assert tasks_total / windows > 1, "no window held several tasks"
        for task in TASKS:
            assert _value(metrics, f'mutask_serve_requests_total{{code="200",task="{task}"}}') == 6
    finally:
        stop_server(served)


def _value(exposition: str, series: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in /metrics")


def test_exported_models_serve_the_same_answers(
    server: Served, grown_store: Path, tmp_path: Path
) -> None:
    """`mutask export` files served with --model answer exactly as the store's server."""
    from mutask.trainer.cli import main

    files = []
    for task in ("low", "private:parity"):
        out = tmp_path / f"{task.replace(':', '_')}.safetensors"
        assert main(["export", task, "--store", str(grown_store), "--out", str(out)]) == 0
        files += ["--model", str(out)]
    served = start_server(files, tmp_path)
    try:
        index = json.loads(served.request("POST", "/v2/repository/index").body)
        assert sorted(m["name"] for m in index) == ["low", "private:parity"]
        meta = served.get("/v2/models/private:parity").json()
        assert meta["parameters"]["class_names"] == ["0|2|4|6|8", "1|3|5|7|9"]
        images = sample_images(4, seed=5)
        for task in ("low", "private:parity"):
            assert np.array_equal(served.infer_json(task, images), server.infer_json(task, images))
    finally:
        stop_server(served)


def test_readme_examples_work(server: Served) -> None:
    """The README's curl body and Python client snippet, against this store's tasks."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Serving every task") : readme.index("## Commands")]
    curl = re.search(r"infer -d '(.*?)'\n", section, flags=re.S)
    assert curl is not None
    r = server.post("/v2/models/low/infer", curl.group(1).encode())
    assert r.status == 200, r.body
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["label"]["shape"] == [1] and outputs["logits"]["datatype"] == "BYTES"
    snippet = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert snippet is not None
    code = snippet.group(1).replace("127.0.0.1:8080", server.hostport)
    code = code.replace("private:digits-parity", "private:parity")
    exec(compile(code, "README.md", "exec"), {"print": lambda *a: None})
