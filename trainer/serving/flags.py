"""The `mutask serve` command-line flags (no heavy imports: `mutask --help` stays instant)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8080


def add_serve_parser(sub: Any, formatter: type[argparse.HelpFormatter], store: str) -> None:
    """Add the `serve` subcommand to the `mutask` subparsers ``sub``."""
    p = sub.add_parser(
        "serve",
        help="serve every published task over the Open Inference Protocol (HTTP)",
        description="Serve every task published in a store from one process, over the "
        "KServe Open Inference Protocol (v2) on HTTP: each task is a model, its version the "
        "manifest's iteration. Frozen components are loaded once and shared by every task "
        "that uses them; concurrent requests are batched, and tasks in the same batch window "
        "compute their common prefix once. Tasks published while it runs are picked up "
        "without a restart. Prometheus metrics at /metrics.",
        formatter_class=formatter,
    )
    p.add_argument("--store", default=store, help="system storage: a folder, file:// or gs://")
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        help="serve this `mutask export` file instead of a store (repeatable; nothing is "
        "shared between files)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto: bfloat16 autocast on bf16-capable GPUs, else float32",
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads for inference (default: every available core)"
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="most images in one request, and in one batch window",
    )
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="how long a batch window waits for more requests",
    )
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=10.0,
        help="how often the store's manifests are checked for new or revisited tasks",
    )
    p.add_argument(
        "--no-share-prefixes",
        action="store_true",
        help="compute each task's path on its own (for comparison)",
    )
    p.add_argument("--max-body-mb", type=float, default=64.0, help="largest request body, MiB")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request")
