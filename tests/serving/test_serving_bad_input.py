"""Bad requests get a clear 4xx in the protocol's error format (``{"error": "..."}``), never a
crash: every case below names what is wrong, and the server answers normally afterwards."""

from __future__ import annotations

import gzip
import http.client
import json
import struct
from typing import Any

import numpy as np
import pytest
from serve_support import Served, sample_images

GOOD = sample_images(1).reshape(-1).tolist()


def images(shape: list[int] | None = None, data: Any = None, **kw: Any) -> dict[str, Any]:
    tensor = {
        "name": "images",
        "datatype": "FP32",
        "shape": shape or [1, 3, 16, 16],
        "data": GOOD if data is None else data,
    }
    tensor.update(kw)
    return {"inputs": [tensor]}


def pixels(shape: list[int], data: Any, datatype: str = "UINT8") -> dict[str, Any]:
    return {"inputs": [{"name": "pixels", "datatype": datatype, "shape": shape, "data": data}]}


def with_outputs(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {**images(), "outputs": list(outputs)}


def binary(header: dict[str, Any], payload: bytes, length: str | None = None) -> tuple:
    body = json.dumps(header).encode()
    return body + payload, {"Inference-Header-Content-Length": length or str(len(body))}


FP32_BYTES = np.asarray(GOOD, np.float32).tobytes()
# (id, task path, body, extra headers, status, words the error must contain)
CASES: list[tuple[str, str, Any, dict[str, str], int, list[str]]] = [
    ("unknown task", "nope", images(), {}, 404, ["unknown task 'nope'", "low"]),
    ("unknown version", "low/versions/7", images(), {}, 404, ["version 0", "'7'"]),
    ("malformed JSON", "low", b'{"inputs": [', {}, 400, ["malformed JSON"]),
    ("not UTF-8", "low", b"\xff\xfe{}", {}, 400, ["malformed JSON"]),
    ("empty body", "low", b"", {}, 400, ["malformed JSON"]),
    ("JSON array body", "low", [1, 2], {}, 400, ["must be a JSON object"]),
    (
        "NaN literal",
        "low",
        b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1], "data": [NaN]}]}',
        {},
        400,
        ["NaN is not a JSON number"],
    ),
    (
        "Infinity literal",
        "low",
        b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [1], "data": [Infinity]}]}',
        {},
        400,
        ["Infinity"],
    ),
    ("no inputs", "low", {"inputs": []}, {}, 400, ["'inputs' must be a non-empty array"]),
    ("inputs not a list", "low", {"inputs": {}}, {}, 400, ["'inputs' must be"]),
    ("unknown field", "low", {**images(), "input": 1}, {}, 400, ["unknown request field"]),
    ("two inputs", "low", {"inputs": images()["inputs"] * 2}, {}, 400, ["repeat"]),
    (
        "unknown input",
        "low",
        {"inputs": [{**images()["inputs"][0], "name": "x"}]},
        {},
        400,
        ["unknown input 'x'"],
    ),
    (
        "wrong datatype string",
        "low",
        images(datatype="FLOAT32"),
        {},
        400,
        ["unknown datatype 'FLOAT32'"],
    ),
    ("datatype not a string", "low", images(datatype=7), {}, 400, ["'datatype' must be"]),
    ("wrong dtype for images", "low", images(datatype="FP64"), {}, 400, ["must be FP32, got FP64"]),
    ("BYTES for images", "low", images(datatype="BYTES"), {}, 400, ["must be FP32"]),
    (
        "wrong shape",
        "low",
        images(shape=[1, 3, 8, 8], data=GOOD[:192]),
        {},
        400,
        ["shape [N, 3, 16, 16]", "[1, 3, 8, 8]"],
    ),
    ("3-d shape", "low", images(shape=[3, 16, 16]), {}, 400, ["shape [N, 3, 16, 16]"]),
    ("negative dimension", "low", images(shape=[-1, 3, 16, 16]), {}, 400, ["negative dimension"]),
    ("shape not integers", "low", images(shape=[1.0, 3, 16, 16]), {}, 400, ["array of integers"]),
    ("empty batch", "low", images(shape=[0, 3, 16, 16], data=[]), {}, 400, ["empty"]),
    (
        "batch too large",
        "low",
        images(shape=[65, 3, 16, 16], data=GOOD * 65),
        {},
        400,
        ["batch of 65 exceeds", "max batch size 64"],
    ),
    ("too few elements", "low", images(data=GOOD[:-1]), {}, 400, ["767 elements", "768"]),
    ("strings as data", "low", images(data=["a"] * 768), {}, 400, ["only numbers"]),
    ("ragged nested data", "low", images(data=[[1.0, 2.0], [3.0]]), {}, 400, ["ragged"]),
    ("null in data", "low", images(data=[None] * 768), {}, 400, ["only numbers"]),
    ("booleans as FP32", "low", images(data=[True] * 768), {}, 400, ["true/false"]),
    ("data not a list", "low", images(data={"a": 1}), {}, 400, ["must be a JSON array"]),
    (
        "images out of [-1, 1]",
        "low",
        images(data=[255.0] * 768),
        {},
        400,
        ["outside [-1, 1]", "pixels"],
    ),
    ("FP32 overflow", "low", images(data=[1e39, *GOOD[1:]]), {}, 400, ["NaN or infinity"]),
    (
        "no data",
        "low",
        {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 16, 16]}]},
        {},
        400,
        ["no 'data'"],
    ),
    ("pixels above 255", "low", pixels([1, 2, 2, 1], [0, 1, 2, 256]), {}, 400, ["0..255"]),
    ("pixels fractional", "low", pixels([1, 2, 2, 1], [0, 1, 2, 3.5]), {}, 400, ["integers"]),
    (
        "pixels wrong datatype",
        "low",
        pixels([1, 2, 2, 1], [0, 1, 2, 3], "INT32"),
        {},
        400,
        ["must be UINT8"],
    ),
    ("pixels 2 channels", "low", pixels([1, 2, 2, 2], list(range(8))), {}, 400, ["C = 1 or 3"]),
    ("pixels too large", "low", pixels([1, 2000, 1, 1], [0] * 2000), {}, 400, ["larger than 1024"]),
    ("unknown output", "low", with_outputs({"name": "probs"}), {}, 400, ["unknown output"]),
    ("output twice", "low", with_outputs({"name": "label"}, {"name": "label"}), {}, 400, ["twice"]),
    (
        "classification on label",
        "low",
        with_outputs({"name": "label", "parameters": {"classification": 2}}),
        {},
        400,
        ["classification applies to 'logits'"],
    ),
    (
        "bad classification",
        "low",
        with_outputs({"name": "logits", "parameters": {"classification": "3"}}),
        {},
        400,
        ["classification must be an integer"],
    ),
    (
        "binary_data not bool",
        "low",
        with_outputs({"name": "logits", "parameters": {"binary_data": 1}}),
        {},
        400,
        ["true or false"],
    ),
    ("id not a string", "low", {**images(), "id": 5}, {}, 400, ["'id' must be a string"]),
    (
        "binary size mismatch",
        "low",
        *binary(
            {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "FP32",
                        "shape": [1, 3, 16, 16],
                        "parameters": {"binary_data_size": 100},
                    }
                ]
            },
            FP32_BYTES[:100],
        ),
        400,
        ["binary_data_size is 100 bytes", "3072"],
    ),
    (
        "binary past the end",
        "low",
        *binary(
            {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "FP32",
                        "shape": [1, 3, 16, 16],
                        "parameters": {"binary_data_size": 4000},
                    }
                ]
            },
            FP32_BYTES,
        ),
        400,
        ["runs past the end"],
    ),
    (
        "binary leftover bytes",
        "low",
        *binary(
            {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "FP32",
                        "shape": [1, 3, 16, 16],
                        "parameters": {"binary_data_size": 3072},
                    }
                ]
            },
            FP32_BYTES + b"xx",
        ),
        400,
        ["add up to 3072"],
    ),
    (
        "binary NaN",
        "low",
        *binary(
            {
                "inputs": [
                    {
                        "name": "images",
                        "datatype": "FP32",
                        "shape": [1, 3, 16, 16],
                        "parameters": {"binary_data_size": 3072},
                    }
                ]
            },
            struct.pack("<f", float("nan")) + FP32_BYTES[4:],
        ),
        400,
        ["NaN or infinity"],
    ),
    (
        "bad header length",
        "low",
        *binary(images(), b"", length="abc"),
        400,
        ["Inference-Header-Content-Length must be an integer"],
    ),
    (
        "header length past body",
        "low",
        *binary(images(), b"", length="99999999"),
        400,
        ["the body has"],
    ),
    ("bad gzip", "low", b"not gzip", {"Content-Encoding": "gzip"}, 400, ["cannot decompress"]),
    ("unknown encoding", "low", b"{}", {"Content-Encoding": "br"}, 415, ["Content-Encoding"]),
    (
        "gzip bomb",
        "low",
        gzip.compress(b" " * (65 * 2**20)),
        {"Content-Encoding": "gzip"},
        413,
        ["decompressed body exceeds"],
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_bad_request_gets_a_clear_4xx(
    server: Served, path: str, body: Any, headers: dict[str, str], status: int, words: list[str]
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = server.request("POST", f"/v2/models/{path}/infer", data, headers)
    assert r.status == status, r.body
    message = r.json()["error"]
    for word in words:
        assert word in message, message


def test_there_are_more_than_thirty_cases() -> None:
    assert len(CASES) > 30


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/models/low/infer", 405),
        ("POST", "/v2/health/live", 405),
        ("GET", "/v2/nothing", 404),
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/nope/ready", 404),
        ("GET", "/v2/models/low/versions/3", 404),
    ],
)
def test_bad_routes_answer_in_the_error_format(
    server: Served, method: str, path: str, status: int
) -> None:
    r = server.request(method, path)
    assert r.status == status
    assert r.json()["error"]


def test_too_large_a_body_is_refused_before_it_is_read(server: Served) -> None:
    """A declared body over --max-body-mb (64 MiB) gets 413 after its headers alone."""
    conn = http.client.HTTPConnection(server.hostport)
    try:
        conn.putrequest("POST", "/v2/models/low/infer")
        conn.putheader("Content-Length", str(65 * 2**20))
        conn.endheaders()
        conn.send(b"{" * 1024)
        response = conn.getresponse()
        assert response.status == 413
        assert "exceeds the limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_gzip_request_is_accepted(server: Served) -> None:
    body = gzip.compress(json.dumps(images()).encode())
    r = server.request("POST", "/v2/models/low/infer", body, {"Content-Encoding": "gzip"})
    assert r.status == 200, r.body


def test_bad_requests_are_counted_and_the_server_lives_on(server: Served) -> None:
    assert server.alive()
    assert server.post("/v2/models/low/infer", images()).status == 200
    metrics = server.get("/metrics").body.decode()
    assert 'mutask_serve_requests_total{code="400",task="low"}' in metrics
    assert 'mutask_serve_requests_total{code="404",task="_unknown"}' in metrics
