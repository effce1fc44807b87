"""The operator's one entry point: ``mutask operator [flags]`` -> settings -> ``kopf.run``.

    mutask operator --namespace team-a --namespace team-b --metrics-port 8080
    mutask operator --all-namespaces --standalone --verbose

The operator image's ENTRYPOINT, the Helm chart's Deployment and the CLI all run this (the CLI
dispatches ``mutask operator ...`` to :func:`run`). Liveness/readiness: kopf's endpoint on
``--liveness-port`` (``/healthz``). Metrics: Prometheus on ``--metrics-port`` (``/metrics``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mutask.operator import api
from mutask.operator.settings import Settings, load

if TYPE_CHECKING:
    import kopf


def run(argv: Sequence[str], *, stop: threading.Event | None = None) -> int:
    """Run the operator until SIGINT/SIGTERM (or ``stop``); returns the process exit code."""
    return operate(load(argv, os.environ), stop=stop)


def operate(settings: Settings, *, stop: threading.Event | None = None) -> int:
    """Serve with ``settings``: kopf with this operator's handlers, timers and watch timeouts."""
    import kopf  # here, not at the top: `mutask operator --help` stays instant

    from mutask.operator import handlers

    kopf.configure(verbose=settings.verbose, debug=False)
    logging.getLogger("mutask").setLevel(logging.DEBUG if settings.verbose else logging.INFO)
    liveness = (
        f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port > 0 else None
    )
    try:
        kopf.run(
            registry=handlers.registry(settings),
            settings=kopf_settings(settings),
            memo=kopf.Memo(settings=settings),
            standalone=settings.standalone or None,
            priority=settings.priority,
            peering_name=settings.peering_name,
            clusterwide=settings.all_namespaces,
            namespaces=list(settings.namespaces),
            liveness_endpoint=liveness,
            stop_flag=stop,
        )
    except KeyboardInterrupt:
        return 130
    return 0


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    """kopf's own settings: explicit watch timeouts (no "zombie" watches), workers, finalizer."""
    import kopf

    out = kopf.OperatorSettings()
    out.watching.server_timeout = settings.watch_server_timeout
    out.watching.client_timeout = settings.watch_client_timeout
    out.watching.connect_timeout = settings.watch_connect_timeout
    out.execution.max_workers = settings.max_workers
    out.persistence.finalizer = api.OPERATOR  # kopf timers need one (on systems)
    out.posting.level = logging.WARNING
    return out
