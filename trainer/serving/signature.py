"""What every served task takes and answers: its inputs, outputs and their checks.

Inputs (exactly one per request):

- ``images``: FP32 ``[N, 3, S, S]``, values in [-1, 1]: what the model computes on (the
  trainer's :func:`~mutask.trainer.data.tensors.prepare` output).
- ``pixels``: UINT8 ``[N, H, W, C]``, C = 1 or 3, any H and W up to :data:`MAX_SIDE`: raw
  images, prepared on the server exactly as the trainer prepares its data (resized to S×S,
  scaled to [-1, 1], grayscale repeated to 3 channels).

Outputs: ``logits`` FP32 ``[N, K]`` (with ``"classification": k``, the top k classes as
``"score:index:name"`` strings) and ``label`` INT64 ``[N]`` (the argmax).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mutask.trainer.data.arrays import ImageSplit
from mutask.trainer.data.tensors import prepare
from mutask.trainer.serving.catalog import ServedTask
from mutask.trainer.serving.protocol import (
    InferRequest,
    InputTensor,
    OutputRequest,
    OutputTensor,
    bad,
    classify,
)

IMAGES, PIXELS = "images", "pixels"
LOGITS, LABEL = "logits", "label"
OUTPUTS = (LOGITS, LABEL)
MAX_SIDE = 1024


def metadata(task: ServedTask, max_batch: int) -> dict[str, Any]:
    """The task's model metadata (OIP), with mutask's details under ``parameters``."""
    s = task.image_size
    params: dict[str, Any] = {
        "path": task.path_id,
        "components": list(task.component_ids),
        "num_classes": task.num_classes,
        "max_batch_size": max_batch,
        "published_precision": task.precision,
        "images": f"FP32 [N, 3, {s}, {s}] in [-1, 1]",
        "pixels": f"UINT8 [N, H, W, C], C = 1 or 3, H and W <= {MAX_SIDE}, resized to {s}x{s}",
    }
    if task.class_names is not None:
        params["class_names"] = list(task.class_names)
    if task.published_at is not None:
        params["published_at"] = task.published_at
    return {
        "name": task.name,
        "versions": [task.version],
        "platform": "mutask_pytorch",
        "inputs": [
            {"name": IMAGES, "datatype": "FP32", "shape": [-1, 3, s, s]},
            {"name": PIXELS, "datatype": "UINT8", "shape": [-1, -1, -1, -1]},
        ],
        "outputs": [
            {"name": LOGITS, "datatype": "FP32", "shape": [-1, task.num_classes]},
            {"name": LABEL, "datatype": "INT64", "shape": [-1]},
        ],
        "parameters": params,
    }


def _check_batch(tensor: InputTensor, max_batch: int) -> None:
    n = tensor.shape[0] if tensor.shape else 0
    if n < 1:
        raise bad(f"input {tensor.name!r}: the batch (first dimension) is empty")
    if n > max_batch:
        raise bad(
            f"input {tensor.name!r}: batch of {n} exceeds this server's max batch size "
            f"{max_batch}: split the request"
        )


def request_images(request: InferRequest, task: ServedTask, max_batch: int) -> torch.Tensor:
    """The request's images as the model's FP32 input [N, 3, S, S], after every check."""
    if len(request.inputs) != 1:
        names = [t.name for t in request.inputs]
        raise bad(f"give exactly one input, {IMAGES!r} or {PIXELS!r}; got {names}")
    tensor = request.inputs[0]
    s = task.image_size
    if tensor.name == IMAGES:
        if tensor.datatype != "FP32":
            raise bad(f"input {IMAGES!r} must be FP32, got {tensor.datatype}")
        if len(tensor.shape) != 4 or tensor.shape[1:] != (3, s, s):
            raise bad(
                f"input {IMAGES!r} must have shape [N, 3, {s}, {s}], got {list(tensor.shape)}"
            )
        _check_batch(tensor, max_batch)
        images = tensor.decode()
        lo, hi = float(images.min()), float(images.max())
        if lo < -1.0 or hi > 1.0:
            raise bad(
                f"input {IMAGES!r} has values in [{lo:g}, {hi:g}], outside [-1, 1]: scale "
                f"them as the trainer does (x / 127.5 - 1), or send raw UINT8 {PIXELS!r}"
            )
        return torch.from_numpy(images.copy())
    if tensor.name == PIXELS:
        if tensor.datatype != "UINT8":
            raise bad(f"input {PIXELS!r} must be UINT8, got {tensor.datatype}")
        shape = tensor.shape
        if len(shape) != 4 or shape[3] not in (1, 3) or min(shape[1:3]) < 1:
            raise bad(
                f"input {PIXELS!r} must have shape [N, H, W, C] with C = 1 or 3, got {list(shape)}"
            )
        if max(shape[1:3]) > MAX_SIDE:
            raise bad(f"input {PIXELS!r}: images larger than {MAX_SIDE}x{MAX_SIDE}")
        _check_batch(tensor, max_batch)
        pixels = tensor.decode()
        x, _ = prepare(ImageSplit(pixels, np.zeros(shape[0], dtype=np.int64)), s)
        return x
    raise bad(f"unknown input {tensor.name!r} (this model takes {IMAGES!r} or {PIXELS!r})")


def requested_outputs(request: InferRequest, task: ServedTask) -> list[OutputRequest]:
    """The outputs to answer (every one when the request names none), after every check."""
    if request.outputs is None:
        return [OutputRequest(name, request.binary_output) for name in OUTPUTS]
    seen: set[str] = set()
    for out in request.outputs:
        if out.name not in OUTPUTS:
            raise bad(f"unknown output {out.name!r} (this model answers {list(OUTPUTS)})")
        if out.name in seen:
            raise bad(f"output {out.name!r} is requested twice")
        if out.classification and out.name != LOGITS:
            raise bad(f"classification applies to {LOGITS!r} only, not {out.name!r}")
        seen.add(out.name)
    return list(request.outputs)


def answer(
    outputs: list[OutputRequest], task: ServedTask, logits: torch.Tensor
) -> list[OutputTensor]:
    """The response tensors for the requested outputs."""
    scores = logits.numpy()
    out = []
    for req in outputs:
        if req.name == LOGITS and req.classification:
            top = classify(scores, req.classification, task.class_names)
            out.append(OutputTensor(LOGITS, "BYTES", top, req.binary))
        elif req.name == LOGITS:
            out.append(OutputTensor(LOGITS, "FP32", scores, req.binary))
        else:
            labels = scores.argmax(axis=1).astype(np.int64)
            out.append(OutputTensor(LABEL, "INT64", labels, req.binary))
    return out
