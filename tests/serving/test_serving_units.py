"""In-process checks of the serving parts: the protocol codec, the window trie, the catalog's
sharing, class names and the command's flag checks."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from serve_support import TASKS, sample_images
from tritonclient.utils import deserialize_bytes_tensor

from mutask.trainer.cli import build_parser, main
from mutask.trainer.config import DatasetConfig
from mutask.trainer.data.class_names import class_names
from mutask.trainer.serving.catalog import Catalog, StoreCatalog, parameter_bytes, params_of
from mutask.trainer.serving.protocol import (
    HEADER_LENGTH,
    OutputTensor,
    ProtocolError,
    classify,
    encode_infer_response,
    parse_infer_request,
)
from mutask.trainer.serving.shared_prefix import Group, WindowTrie, forward_window
from mutask.trainer.store.system_store import SystemStore

# --------------------------------------------------------------------------- protocol


def test_json_request_flat_and_nested_decode_alike() -> None:
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    for data in (x.reshape(-1).tolist(), x.tolist()):
        body = json.dumps(
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [2, 2, 3], "data": data}]}
        ).encode()
        req = parse_infer_request(body)
        assert req.outputs is None and not req.binary_output
        assert np.array_equal(req.inputs[0].decode(), x)


def test_binary_request_round_trip() -> None:
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    y = np.arange(5, dtype=np.uint8)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP32",
                    "shape": [3, 4],
                    "parameters": {"binary_data_size": x.nbytes},
                },
                {
                    "name": "y",
                    "datatype": "UINT8",
                    "shape": [5],
                    "parameters": {"binary_data_size": y.nbytes},
                },
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    req = parse_infer_request(header + x.tobytes() + y.tobytes(), str(len(header)))
    assert req.binary_output
    assert np.array_equal(req.inputs[0].decode(), x)
    assert np.array_equal(req.inputs[1].decode(), y)


def test_response_binary_and_bytes_decode_with_tritonclient() -> None:
    logits = np.array([[0.5, 2.0, -1.0]], dtype=np.float32)
    top = classify(logits, 2, ["a", "b", "c"])
    assert top.tolist() == [["2.000000:1:b", "0.500000:0:a"]]
    body, headers = encode_infer_response(
        "m",
        "3",
        "id-1",
        [OutputTensor("logits", "FP32", logits, True), OutputTensor("top", "BYTES", top, True)],
    )
    n = int(headers[HEADER_LENGTH])
    doc = json.loads(body[:n])
    assert doc["model_version"] == "3" and doc["id"] == "id-1"
    size = doc["outputs"][0]["parameters"]["binary_data_size"]
    assert np.array_equal(np.frombuffer(body[n : n + size], np.float32).reshape(1, 3), logits)
    strings = deserialize_bytes_tensor(body[n + size :])
    assert [s.decode() for s in strings] == top.reshape(-1).tolist()


def test_json_floats_round_trip_bit_for_bit() -> None:
    x = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    body, _ = encode_infer_response("m", "0", None, [OutputTensor("o", "FP32", x)])
    back = np.asarray(json.loads(body)["outputs"][0]["data"], dtype=np.float32)
    assert np.array_equal(back, x)


@pytest.mark.parametrize(
    "doc",
    [
        {"inputs": [{"name": "a", "datatype": "INT8", "shape": [1], "data": [128]}]},
        {"inputs": [{"name": "a", "datatype": "UINT8", "shape": [1], "data": [-1]}]},
        {"inputs": [{"name": "a", "datatype": "BOOL", "shape": [1], "data": [1]}]},
        {"inputs": [{"name": "a", "datatype": "FP16", "shape": [1], "data": [1e6]}]},
    ],
)
def test_out_of_range_values_are_refused(doc: dict[str, object]) -> None:
    req = parse_infer_request(json.dumps(doc).encode())
    with pytest.raises(ProtocolError) as err:
        req.inputs[0].decode()
    assert err.value.status == 400


# --------------------------------------------------------------------------- window trie


def test_window_trie_computes_each_shared_node_once() -> None:
    calls: dict[str, int] = {}

    def layer(name: str, scale: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(h: torch.Tensor) -> torch.Tensor:
            calls[name] = calls.get(name, 0) + h.shape[0]
            return h * scale + 1

        return run

    layers = {n: layer(n, s) for n, s in zip("abcdef", (2, 3, 5, 7, 11, 13), strict=True)}
    prefixes = [("a", "b", "c"), ("a", "b", "d"), ("a", "e"), ("f",)]
    rows = [slice(0, 2), slice(2, 3), slice(3, 6), slice(6, 7)]
    x = torch.arange(7, dtype=torch.float64)
    trie = WindowTrie(prefixes, rows)
    for p, r in zip(prefixes, rows, strict=True):
        got = trie.activation_rows(p, [layers[n] for n in p], x, r)
        want = x[r]
        for n in p:
            want = want * {"a": 2, "b": 3, "c": 5, "d": 7, "e": 11, "f": 13}[n] + 1
        assert torch.equal(got, want)
    # every layer ran once per row below it: a on rows 0-5, b on 0-2, ...
    assert calls == {"a": 6, "b": 3, "c": 2, "d": 1, "e": 3, "f": 1}


def test_window_trie_needs_sorted_rows() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        WindowTrie([("a", "b"), ("c",), ("a", "d")], [slice(0, 1), slice(1, 2), slice(2, 3)])


@pytest.fixture(scope="module")
def catalog(grown_store: Path) -> Catalog:
    source = StoreCatalog(SystemStore.open(str(grown_store)), torch.device("cpu"))
    loaded = source.refresh()
    assert loaded is not None and source.refresh() is None  # unchanged: no new snapshot
    return loaded


def test_catalog_loads_each_component_once(catalog: Catalog, grown_store: Path) -> None:
    manifests = SystemStore.open(str(grown_store)).manifests()
    ids = {cid for m in manifests.values() for cid in m["path"]["components"] for cid in [cid[1]]}
    assert catalog.components == len(ids)
    owners: dict[str, set[int]] = {}
    for task in catalog.tasks.values():
        for cid, module in zip(task.component_ids, task.modules, strict=True):
            owners.setdefault(cid, set()).add(id(module))
    assert all(len(objs) == 1 for objs in owners.values()), "a component loaded twice"
    shared = sum(
        1 for cid in ids if sum(cid in t.component_ids for t in catalog.tasks.values()) > 1
    )
    assert shared > 0, "the grown tasks share nothing: the test proves nothing"
    standalone = sum(params_of(t) for t in catalog.tasks.values())
    assert catalog.parameters < standalone
    assert parameter_bytes(catalog) == 4 * catalog.parameters
    assert all(
        not p.requires_grad
        for t in catalog.tasks.values()
        for m in t.modules
        for p in m.parameters()
    )


def test_forward_window_matches_each_task_alone(catalog: Catalog) -> None:
    groups = [
        Group(catalog.tasks[t], torch.from_numpy(sample_images(i + 1, i)))
        for i, t in enumerate(TASKS)
    ]
    shared = forward_window(groups, torch.device("cpu"))
    alone = forward_window(groups, torch.device("cpu"), share=False)
    for g, s, a in zip(groups, shared, alone, strict=True):
        assert s.shape == (g.images.shape[0], g.task.num_classes)
        torch.testing.assert_close(s, a, rtol=1e-4, atol=1e-5)
        one = forward_window([g], torch.device("cpu"))[0]  # alone in its window: exact
        with torch.inference_mode():
            assert torch.equal(one, g.task.forward(g.images))


# --------------------------------------------------------------------------- class names


@pytest.mark.parametrize(
    ("cfg", "n", "names"),
    [
        (DatasetConfig(source="fashion_mnist", labels=[9, 0]), 2, ["Ankle boot", "T-shirt/top"]),
        (DatasetConfig(source="mnist"), 10, [str(i) for i in range(10)]),
        (DatasetConfig(source="digits", label_map={"3": 1, "1": 0, "2": 1}), 2, ["1", "2|3"]),
        (DatasetConfig(source="data.npz"), 10, None),
        (DatasetConfig(source="digits"), 5, None),  # does not describe 5 classes
        (None, 3, None),
    ],
)
def test_class_names(cfg: DatasetConfig | None, n: int, names: list[str] | None) -> None:
    assert class_names(cfg, n) == names


# --------------------------------------------------------------------------- command


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-batch", "0"], "--max-batch"),
        (["--max-wait-ms", "-1"], "--max-wait-ms"),
        (["--poll-seconds", "0"], "--poll-seconds"),
        (["--port", "70000"], "--port"),
        (["--threads", "0"], "--threads"),
        (["--device", "xla"], "xla"),
        (["--store", "/nonexistent/store"], "no such folder"),
        (["--model", "/nonexistent.safetensors"], "no such file"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    flags: list[str], words: str, grown_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = [] if "--store" in flags else ["--store", str(grown_store)]
    assert main(["serve", *store, *flags]) == 2
    assert words in capsys.readouterr().err


def test_help_shows_every_default() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(sub.choices["serve"].format_help().split())
    for default in ("8080", "127.0.0.1", "64", "2.0", "10.0", "mutask-store"):
        assert f"(default: {default})" in text


def test_kserve_sample_runs_a_valid_serve_command() -> None:
    """The KServe InferenceService sample's container is a `mutask serve` command line that
    parses, listens where KServe routes (kserve-container, port 8080) and probes OIP health."""
    import yaml

    path = Path(__file__).resolve().parents[2] / "manifests/samples/kserve/inferenceservice.yaml"
    doc = yaml.safe_load(path.read_text())
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    (container,) = doc["spec"]["predictor"]["containers"]
    assert container["name"] == "kserve-container" and container["command"] == ["mutask"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "serve" and args.store.startswith("gs://")
    assert args.host == "0.0.0.0" and args.port == container["ports"][0]["containerPort"] == 8080
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
