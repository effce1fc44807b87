"""The HTTP routes of the Open Inference Protocol (v2) on Starlette, plus /metrics.

=====================================================  ==========================================
``GET  /v2/health/live``, ``/v2/health/ready``         liveness; ready once the system is loaded
``GET  /v2``                                           server metadata (name, version, extensions)
``GET  /v2/models/{task}[/versions/{v}]``              model metadata (inputs, outputs, classes)
``GET  /v2/models/{task}[/versions/{v}]/ready``        the task is served (at that version)
``POST /v2/models/{task}[/versions/{v}]/infer``        inference
``POST /v2/repository/index``                          every served task, version and state
``GET  /metrics``                                      Prometheus
=====================================================  ==========================================

Each task is a model; its one version is its manifest's iteration. Every error is the
protocol's ``{"error": "..."}`` with a 4xx status for anything the client can fix (an
unknown task or version 404, a body over the limit 413, the rest 400), 503 while loading.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mutask.trainer.serving.catalog import ServedTask
from mutask.trainer.serving.metrics import CONTENT_TYPE, UNKNOWN_TASK
from mutask.trainer.serving.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    ProtocolError,
    encode_infer_response,
    parse_infer_request,
)
from mutask.trainer.serving.server import Server
from mutask.trainer.serving.signature import answer, metadata, request_images, requested_outputs

log = logging.getLogger("mutask.serve")
Handler = Callable[[Request], Awaitable[Response]]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def protocol_errors(handler: Handler) -> Handler:
    """Turn ProtocolError into its response and any other exception into a logged 500."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ProtocolError as err:
            return error(err.status, err.message)
        except Exception as err:
            log.exception("internal error on %s %s", request.method, request.url.path)
            return error(500, f"internal error: {type(err).__name__}: {err}")

    return wrapped


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes (413) and decompressed when the
    client says gzip or deflate (also at most ``limit`` bytes)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"request body of {declared} bytes exceeds the limit {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(415, f"unsupported Content-Encoding {encoding!r} (gzip, deflate)")
    inflate = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflate.decompress(body, limit + 1)
    except zlib.error as err:
        raise ProtocolError(400, f"cannot decompress the {encoding} body: {err}") from None
    if len(out) > limit or inflate.unconsumed_tail:
        raise ProtocolError(413, f"decompressed body exceeds the limit of {limit} bytes")
    return out


class Routes:
    """The handlers, over one :class:`~.server.Server`."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def task(self, request: Request) -> ServedTask:
        """The path's task at the path's version (if given), or a 404/503 ProtocolError."""
        name = request.path_params["task"]
        catalog = self.server.catalog
        if catalog is None:
            raise ProtocolError(503, "the server is still loading the system")
        task = catalog.tasks.get(name)
        if task is None:
            raise ProtocolError(
                404, f"unknown task {name!r} (served: {', '.join(sorted(catalog.tasks)) or 'none'})"
            )
        version = request.path_params.get("version")
        if version is not None and version != task.version:
            raise ProtocolError(
                404, f"task {name!r} is served at version {task.version}, not {version!r}"
            )
        return task

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        if self.server.catalog is None:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(
            {"name": "mutask", "version": self.server.version, "extensions": list(EXTENSIONS)}
        )

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(metadata(self.task(request), self.server.max_batch))

    async def model_ready(self, request: Request) -> Response:
        task = self.task(request)
        return JSONResponse({"name": task.name, "version": task.version, "ready": True})

    async def index(self, request: Request) -> Response:
        catalog = self.server.catalog
        tasks = catalog.tasks.values() if catalog else ()
        return JSONResponse(
            [{"name": t.name, "version": t.version, "state": "READY"} for t in tasks]
        )

    async def metrics(self, request: Request) -> Response:
        return Response(self.server.metrics.exposition(), media_type=CONTENT_TYPE)

    async def infer(self, request: Request) -> Response:
        started = time.perf_counter()
        name = request.path_params["task"]
        catalog = self.server.catalog
        label = self.server.metrics.task_label(name, catalog) if catalog else UNKNOWN_TASK
        try:
            response = await self._infer(request)
        except ProtocolError as err:
            self.server.metrics.request(label, err.status, None)
            raise
        except Exception:
            self.server.metrics.request(label, 500, None)
            raise
        self.server.metrics.request(label, 200, time.perf_counter() - started)
        return response

    async def _infer(self, request: Request) -> Response:
        task = self.task(request)
        body = await read_body(request, self.server.max_body)
        parsed = parse_infer_request(body, request.headers.get(HEADER_LENGTH))
        images = request_images(parsed, task, self.server.max_batch)
        outputs = requested_outputs(parsed, task)
        logits = await self.server.batcher.infer(task, images)
        content, headers = encode_infer_response(
            task.name, task.version, parsed.id, answer(outputs, task, logits)
        )
        return Response(content, headers=headers)


async def not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    if status == 404:
        detail = f"no route {request.method} {request.url.path} (see GET /v2)"
    elif status == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    return error(status, detail)


def build_app(server: Server) -> Starlette:
    """The Starlette application; its lifespan starts and stops the server's loops."""
    r = Routes(server)
    model = "/v2/models/{task}"
    versioned = "/v2/models/{task}/versions/{version}"
    routes: list[Any] = [
        Route("/v2/health/live", protocol_errors(r.live)),
        Route("/v2/health/ready", protocol_errors(r.ready)),
        Route("/v2", protocol_errors(r.server_metadata)),
        Route("/v2/repository/index", protocol_errors(r.index), methods=["POST"]),
        Route("/metrics", protocol_errors(r.metrics)),
    ]
    for base in (model, versioned):
        routes += [
            Route(base, protocol_errors(r.model_metadata)),
            Route(f"{base}/ready", protocol_errors(r.model_ready)),
            Route(f"{base}/infer", protocol_errors(r.infer), methods=["POST"]),
        ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: not_found},
        lifespan=server.lifespan,
    )
