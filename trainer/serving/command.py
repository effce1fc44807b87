"""`mutask serve`: check the flags, build the server over a store (or exported files), run it."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
import uvicorn

from mutask.contract import ExitCode
from mutask.trainer.config import ConfigError
from mutask.trainer.runtime.device import select_device
from mutask.trainer.runtime.threads import available_cpus
from mutask.trainer.serving.app import build_app
from mutask.trainer.serving.catalog import ExportCatalog, StoreCatalog
from mutask.trainer.serving.server import CatalogSource, Server, ServeSettings
from mutask.trainer.store.objects import LocalObjectStore
from mutask.trainer.store.system_store import SystemStore


def settings_from_args(args: argparse.Namespace, autocast: torch.dtype | None) -> ServeSettings:
    """The server settings, every flag checked (ConfigError names the flag and value)."""
    checks = [
        ("--max-batch", args.max_batch, args.max_batch >= 1, "must be >= 1"),
        ("--max-wait-ms", args.max_wait_ms, args.max_wait_ms >= 0, "must be >= 0"),
        ("--poll-seconds", args.poll_seconds, args.poll_seconds >= 0.05, "must be >= 0.05"),
        ("--max-body-mb", args.max_body_mb, args.max_body_mb > 0, "must be > 0"),
        ("--port", args.port, 1 <= args.port <= 65535, "must be a TCP port (1..65535)"),
    ]
    if args.threads is not None:
        checks.append(("--threads", args.threads, args.threads >= 1, "must be >= 1"))
    for flag, value, ok, why in checks:
        if not ok:
            raise ConfigError(flag, value, why)
    return ServeSettings(
        max_batch=args.max_batch,
        max_wait=args.max_wait_ms / 1000.0,
        poll_seconds=args.poll_seconds,
        share_prefixes=not args.no_share_prefixes,
        max_body=int(args.max_body_mb * 2**20),
        autocast=autocast,
    )


def _source(args: argparse.Namespace, device: torch.device) -> tuple[CatalogSource, str]:
    if args.model:
        missing = [str(p) for p in args.model if not Path(p).is_file()]
        if missing:
            raise ConfigError("--model", missing, "no such file")
        return ExportCatalog([Path(p) for p in args.model], device), ", ".join(map(str, args.model))
    store = SystemStore.open(args.store)
    if isinstance(store.objects, LocalObjectStore) and not store.objects.root.is_dir():
        raise ConfigError(
            "--store", args.store, "no such folder (run `mutask demo` or give a store)"
        )
    return StoreCatalog(store, device), store.uri


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGINT/SIGTERM (in-flight requests finish first)."""
    if args.device == "xla":
        raise ConfigError(
            "--device",
            args.device,
            "serving on XLA is not supported (every new batch size would compile a new "
            "graph); use cpu or cuda",
        )
    try:
        choice = select_device(args.device, args.precision)
    except (RuntimeError, ValueError) as err:
        raise ConfigError("--device", args.device, str(err)) from err
    settings = settings_from_args(args, choice.autocast)
    if choice.kind == "cpu":
        torch.set_num_threads(args.threads or available_cpus())
    source, where = _source(args, choice.device)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = Server(source, choice.device, settings)
    print(
        f"mutask serve: {where} on {choice.describe()}, Open Inference Protocol v2 at "
        f"http://{args.host}:{args.port}/v2 (metrics at /metrics)",
        flush=True,
    )
    config = uvicorn.Config(
        build_app(server),
        host=args.host,
        port=args.port,
        log_level="info" if args.access_log else "warning",
        access_log=args.access_log,
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(config).run()
    return ExitCode.OK
