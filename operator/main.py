"""``mutask operator``: command-line entry point wrapping kopf's programmatic ``kopf.run``.

    mutask operator --namespace team-a --namespace team-b --metrics-port 8080
    mutask operator --all-namespaces --standalone --verbose

Liveness/readiness: kopf's endpoint on ``--liveness-port`` (``/healthz``). Metrics: Prometheus
on ``--metrics-port`` (``/metrics``). Watch timeouts are explicit (see handlers.startup).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mutask operator",
        description="Run the mutask Kubernetes operator (MultitaskSystem, TaskIntroduction).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="namespace to serve (repeatable; glob patterns allowed)",
    )
    scope.add_argument(
        "--all-namespaces", "-A", action="store_true", help="serve the whole cluster"
    )
    parser.add_argument("--metrics-port", type=int, default=8080, help="Prometheus port (0: off)")
    parser.add_argument("--liveness-port", type=int, default=8081, help="/healthz port (0: off)")
    parser.add_argument(
        "--standalone", action="store_true", help="no kopf peering (single replica, no HA)"
    )
    parser.add_argument("--peering-name", default=None, help="kopf peering object for HA")
    parser.add_argument("--priority", type=int, default=0, help="kopf peering priority")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    args = parser.parse_args(list(argv))
    if not args.namespace and not args.all_namespaces:
        parser.error("give --namespace NS (repeatable) or --all-namespaces")
    return args


def run(argv: list[str]) -> int:
    """Run the operator until SIGINT/SIGTERM; returns the process exit code."""
    args = parse_args(argv)
    import kopf

    from mutask.operator import handlers

    handlers.OPTIONS = dataclasses.replace(
        handlers.Options.from_env(), metrics_port=args.metrics_port
    )
    kopf.configure(verbose=args.verbose, debug=False)
    logging.getLogger("mutask").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port > 0 else None
    try:
        kopf.run(
            standalone=args.standalone or None,
            priority=args.priority,
            peering_name=args.peering_name,
            clusterwide=bool(args.all_namespaces),
            namespaces=list(args.namespace),
            liveness_endpoint=liveness,
        )
    except KeyboardInterrupt:
        return 130
    return 0
