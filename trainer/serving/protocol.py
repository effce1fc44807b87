"""The Open Inference Protocol (KServe v2) over HTTP, as data: request bodies in, responses out.

No web framework and no torch here: bytes become an :class:`InferRequest` whose tensors are
decoded to numpy only once the model has accepted their names and datatypes, and outputs
become a JSON (or JSON + binary) body. Every malformed request raises :class:`ProtocolError`
with an HTTP status and a message naming the field and value; its body is the protocol's
error object ``{"error": "..."}``.

Besides the core JSON tensors (flat or nested, row-major), two extensions that stock clients
(``tritonclient``) use by default are implemented: *binary tensor data* (the JSON header's
length in the ``Inference-Header-Content-Length`` header, raw little-endian tensors after it,
``binary_data_size`` per tensor, ``binary_data``/``binary_data_output`` to ask for binary
outputs) and *classification* (an output asked for with ``"classification": k`` answers the
top ``k`` classes as ``"score:index[:name]"`` strings, BYTES).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ("binary_tensor_data", "classification")

# OIP datatype -> numpy dtype (little-endian); BYTES is handled on its own.
DATATYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
KNOWN_DATATYPES = (*DATATYPES, "BYTES", "BF16")


class ProtocolError(Exception):
    """A request the protocol (or the model) refuses: an HTTP status and a clear message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad(message: str) -> ProtocolError:
    return ProtocolError(400, message)


def error_body(message: str) -> bytes:
    """The protocol's error object."""
    return json.dumps({"error": message}).encode()


def _reject_constant(name: str) -> Any:
    raise bad(f"malformed JSON: {name} is not a JSON number (send finite numbers only)")


def parse_json(data: bytes, what: str = "request body") -> Any:
    """JSON, refusing NaN/Infinity literals (which Python's json would accept)."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise bad(f"malformed JSON in the {what}: {err}") from None


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class InputTensor:
    """One request input, not yet decoded: JSON ``data`` or a slice of the binary part."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any = None
    binary: bytes | None = None

    @property
    def count(self) -> int:
        return math.prod(self.shape)

    def decode(self) -> np.ndarray:
        """The tensor as a numpy array of its datatype and shape (checked element by element:
        count, types, integer ranges; floats must be finite)."""
        if self.datatype not in DATATYPES:
            raise bad(f"input {self.name!r}: datatype {self.datatype} cannot be decoded here")
        dtype = DATATYPES[self.datatype]
        where = f"input {self.name!r} ({self.datatype}, shape {list(self.shape)})"
        if self.binary is not None:
            if len(self.binary) != self.count * dtype.itemsize:
                raise bad(
                    f"{where}: binary_data_size is {len(self.binary)} bytes, expected "
                    f"{self.count} elements x {dtype.itemsize} bytes = "
                    f"{self.count * dtype.itemsize}"
                )
            array = np.frombuffer(self.binary, dtype=dtype).reshape(self.shape)
        else:
            array = _from_json(self.data, dtype, self.count, where).reshape(self.shape)
        if dtype.kind == "f" and not np.isfinite(array).all():
            raise bad(f"{where}: contains NaN or infinity (or a value out of range)")
        return array


def _from_json(data: Any, dtype: np.dtype[Any], count: int, where: str) -> np.ndarray:
    if not isinstance(data, list):
        raise bad(f"{where}: 'data' must be a JSON array, got {type(data).__name__}")
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise bad(f"{where}: 'data' is a ragged or mixed array") from None
    if raw.size != count:
        raise bad(f"{where}: 'data' has {raw.size} elements, the shape needs {count}")
    kind = raw.dtype.kind
    if count and kind not in "biuf":
        raise bad(f"{where}: 'data' must hold only numbers (found {raw.dtype} values)")
    if dtype.kind == "b":
        if count and kind != "b":
            raise bad(f"{where}: BOOL data must be true/false")
        return raw.astype(dtype)
    if count and kind == "b":
        raise bad(f"{where}: true/false given where numbers are expected")
    if dtype.kind in "iu":
        if count and kind == "f":
            raise bad(f"{where}: integers expected, got fractional numbers")
        info = np.iinfo(dtype)
        if count and (raw.min() < info.min or raw.max() > info.max):
            raise bad(f"{where}: values must lie in {info.min}..{info.max}")
        return raw.astype(dtype)
    with np.errstate(over="ignore"):
        return raw.astype(dtype)  # out-of-range floats become inf: refused by the caller


@dataclass(frozen=True)
class OutputRequest:
    """An output the client asked for: binary or JSON, and top-k classification (0: off)."""

    name: str
    binary: bool = False
    classification: int = 0


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request. ``outputs`` None: every output, binary iff
    ``binary_output`` (the request parameter ``binary_data_output``)."""

    inputs: list[InputTensor]
    outputs: list[OutputRequest] | None = None
    id: str | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _flag(params: Mapping[str, Any], key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise bad(f"{where}: parameter {key!r} must be true or false, got {value!r}")
    return value


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    ):
        raise bad(f"{where}: 'shape' must be an array of integers, got {value!r}")
    if any(d < 0 for d in value):
        raise bad(f"{where}: 'shape' {value} has a negative dimension")
    return tuple(value)


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Parse an infer request body (JSON, or JSON header + binary tensors)."""
    binary = b""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            raise bad(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 < n <= len(body):
            raise bad(f"{HEADER_LENGTH} is {n}, the body has {len(body)} bytes")
        body, binary = body[:n], body[n:]
    doc = _object(parse_json(body), "the request")
    unknown = sorted(set(doc) - {"id", "parameters", "inputs", "outputs"})
    if unknown:
        raise bad(f"unknown request field(s) {unknown} (known: id, parameters, inputs, outputs)")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise bad(f"'id' must be a string, got {request_id!r}")
    params = _object(doc.get("parameters", {}), "'parameters'")
    inputs_doc = doc.get("inputs")
    if not isinstance(inputs_doc, list) or not inputs_doc:
        raise bad("'inputs' must be a non-empty array of tensors")
    inputs: list[InputTensor] = []
    offset = 0
    for i, item in enumerate(inputs_doc):
        tensor, used = _input(_object(item, f"inputs[{i}]"), i, binary, offset)
        inputs.append(tensor)
        offset += used
    if offset != len(binary):
        raise bad(
            f"the binary part has {len(binary)} bytes but the inputs' binary_data_size add up "
            f"to {offset}"
        )
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise bad(f"input names repeat: {names}")
    outputs = None
    if "outputs" in doc:
        outputs_doc = doc["outputs"]
        if not isinstance(outputs_doc, list):
            raise bad("'outputs' must be an array")
        outputs = [_output(_object(o, f"outputs[{i}]"), i) for i, o in enumerate(outputs_doc)]
    return InferRequest(
        inputs=inputs,
        outputs=outputs,
        id=request_id,
        binary_output=_flag(params, "binary_data_output", "request"),
        parameters=params,
    )


def _input(doc: dict[str, Any], i: int, binary: bytes, offset: int) -> tuple[InputTensor, int]:
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"inputs[{i}]: 'name' must be a non-empty string")
    where = f"input {name!r}"
    datatype = doc.get("datatype")
    if not isinstance(datatype, str):
        raise bad(f"{where}: 'datatype' must be a string, got {datatype!r}")
    if datatype not in KNOWN_DATATYPES:
        raise bad(f"{where}: unknown datatype {datatype!r} (known: {', '.join(KNOWN_DATATYPES)})")
    shape = _shape(doc.get("shape"), where)
    params = _object(doc.get("parameters", {}), f"{where}: 'parameters'")
    size = params.get("binary_data_size")
    if size is None:
        if "data" not in doc:
            raise bad(f"{where}: no 'data' (and no binary_data_size parameter)")
        return InputTensor(name, datatype, shape, data=doc["data"]), 0
    if "data" in doc:
        raise bad(f"{where}: give either 'data' or binary_data_size, not both")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise bad(f"{where}: binary_data_size must be an integer >= 0, got {size!r}")
    if offset + size > len(binary):
        raise bad(
            f"{where}: binary_data_size {size} runs past the end of the binary part "
            f"({len(binary)} bytes after the JSON header)"
        )
    return InputTensor(name, datatype, shape, binary=binary[offset : offset + size]), size


def _output(doc: dict[str, Any], i: int) -> OutputRequest:
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"outputs[{i}]: 'name' must be a non-empty string")
    params = _object(doc.get("parameters", {}), f"output {name!r}: 'parameters'")
    k = params.get("classification", 0)
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise bad(f"output {name!r}: classification must be an integer >= 1, got {k!r}")
    return OutputRequest(name, _flag(params, "binary_data", f"output {name!r}"), k)


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class OutputTensor:
    """A response output: its datatype, the array (object array of str for BYTES), and
    whether it goes in the binary part."""

    name: str
    datatype: str
    array: np.ndarray
    binary: bool = False


def classify(
    scores: np.ndarray, k: int, names: Sequence[str] | None
) -> np.ndarray:  # [n, K] -> [n, k] of "score:index[:name]"
    """The top ``k`` classes of each row, best first, in the classification extension's form."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.empty(order.shape, dtype=object)
    for r, row in enumerate(order):
        for c, idx in enumerate(row):
            label = f":{names[idx]}" if names is not None else ""
            out[r, c] = f"{float(scores[r, idx]):f}:{int(idx)}{label}"
    return out


def _bytes_payload(array: np.ndarray) -> bytes:
    parts = []
    for item in array.reshape(-1):
        data = str(item).encode()
        parts.append(struct.pack("<I", len(data)) + data)
    return b"".join(parts)


def encode_infer_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Sequence[OutputTensor],
) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (``Inference-Header-Content-Length`` when any output
    is binary)."""
    docs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        doc: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.array.shape),
        }
        if out.binary:
            if out.datatype == "BYTES":
                blob = _bytes_payload(out.array)
            else:
                blob = np.ascontiguousarray(out.array, DATATYPES[out.datatype]).tobytes()
            doc["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif out.datatype == "BYTES":
            doc["data"] = [str(x) for x in out.array.reshape(-1)]
        else:
            doc["data"] = out.array.reshape(-1).tolist()
        docs.append(doc)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = docs
    header = json.dumps(response, allow_nan=False).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
