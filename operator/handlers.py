"""kopf wiring: indexes, watch-event handlers and a periodic resync that calls the reconcilers.

Only ``@kopf.on.event`` handlers and indexes are used: kopf then stores no handler progress
and adds no finalizer (deleting an introduction cascades to its Job through ownerReferences;
published weights are never touched). Level-based: every event, and every ``resync_seconds``
for unfinished objects, re-reads the world and converges. Run with ``kopf run -m
mutask.operator.handlers`` or ``mutask operator``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from mutask import contract
from mutask.operator import api, metrics
from mutask.operator.admission import Peer, peer_from_body
from mutask.operator.context import Context
from mutask.operator.kube import Kube, load_client_config
from mutask.operator.phases import unschedulable
from mutask.operator.reconcile import reconcile_introduction
from mutask.operator.settings import OperatorSettings
from mutask.operator.system import reconcile_system

log = logging.getLogger(__name__)
MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}


@dataclass
class Options:
    """Process options set by ``main.run`` (or from env when run through ``kopf run``)."""

    metrics_port: int = 8080
    server_timeout: int = 300  # the apiserver's timeoutSeconds: an integer (400 for "300.0")
    client_timeout: float = 330.0
    connect_timeout: float = 10.0
    max_workers: int = 16

    @classmethod
    def from_env(cls) -> Options:
        env = os.environ
        return cls(
            metrics_port=int(env.get("MUTASK_OPERATOR_METRICS_PORT", "8080")),
            server_timeout=int(env.get("MUTASK_OPERATOR_WATCH_SERVER_TIMEOUT", "300")),
            client_timeout=float(env.get("MUTASK_OPERATOR_WATCH_CLIENT_TIMEOUT", "330")),
            connect_timeout=float(env.get("MUTASK_OPERATOR_WATCH_CONNECT_TIMEOUT", "10")),
            max_workers=int(env.get("MUTASK_OPERATOR_MAX_WORKERS", "16")),
        )


OPTIONS: Options | None = None  # None: read the environment at startup


@dataclass
class _State:
    ctx: Context | None = None
    ti_index: Mapping[Any, Any] = field(default_factory=dict)
    pod_index: Mapping[Any, Any] = field(default_factory=dict)
    systems: set[tuple[str, str]] = field(default_factory=set)
    resync: asyncio.Task[None] | None = None


STATE = _State()


def _peers(namespace: str, system: str) -> list[Peer]:
    return list(STATE.ti_index.get((namespace, system), []))


def _preemptions(namespace: str, name: str) -> int:
    return len(set(STATE.pod_index.get((namespace, name), [])))


def context() -> Context:
    if STATE.ctx is None:
        raise kopf.TemporaryError("operator context not initialised yet", delay=1)
    return STATE.ctx


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    """Authenticate kopf exactly like the reconcilers' client (see kube.load_client_config)."""
    cfg = load_client_config()
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0] if parts else None)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    options = OPTIONS or Options.from_env()
    settings.watching.server_timeout = options.server_timeout
    settings.watching.client_timeout = options.client_timeout
    settings.watching.connect_timeout = options.connect_timeout
    settings.execution.max_workers = options.max_workers
    settings.persistence.finalizer = f"{contract.GROUP}/operator"  # named, though none is needed
    settings.posting.level = logging.WARNING
    try:
        metrics.serve(options.metrics_port)
    except OSError as err:  # keep reconciling; the missing /metrics shows in monitoring
        log.error("cannot serve metrics on port %s: %s", options.metrics_port, err)
    STATE.ti_index, STATE.pod_index, STATE.systems = {}, {}, set()
    kube = await asyncio.get_running_loop().run_in_executor(None, Kube.from_environment)
    STATE.ctx = Context(
        settings=OperatorSettings.from_env(),
        kube=kube,
        peers=_peers,
        preemptions=_preemptions,
    )
    STATE.resync = asyncio.create_task(_resync_forever())


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if STATE.resync is not None:
        STATE.resync.cancel()
        STATE.resync = None


@kopf.on.probe(id="introductions")
def probe_introductions(**_: Any) -> dict[str, int]:
    return dict(Counter(p.phase for store in STATE.ti_index.values() for p in store))


@kopf.index(contract.GROUP, contract.VERSION, contract.TI_PLURAL)
def ti_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[tuple[str, str], Peer]:
    namespace = namespace or ""
    ref = (body.get("spec") or {}).get("systemRef") or {}
    return {(namespace, str(ref.get("name", ""))): peer_from_body(body)}


def is_preempted(pod: Mapping[str, Any]) -> bool:
    """A failed trainer pod that was disrupted or exited 75 (checkpointed after SIGTERM)."""
    st = pod.get("status") or {}
    if st.get("phase") != "Failed":
        return False
    for cond in st.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return True
    for cs in st.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        preempted = term.get("exitCode") == contract.ExitCode.PREEMPTED
        if cs.get("name") == contract.CONTAINER_NAME and preempted:
            return True
    return False


def _owner_intro(obj: Mapping[str, Any]) -> str | None:
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    name = ann.get(api.LABEL_INTRODUCTION)
    return str(name) if name else None


@kopf.index("pods", labels=MANAGED)
def pod_index(
    body: kopf.Body, namespace: str | None, **_: Any
) -> dict[tuple[str, str], str] | None:
    namespace = namespace or ""
    intro = _owner_intro(body)
    if intro is None or not is_preempted(body):
        return None
    return {
        (namespace, intro): str(body.get("metadata", {}).get("uid") or body["metadata"]["name"])
    }


def _remember(kwargs: Mapping[str, Any]) -> None:
    if "ti_index" in kwargs:
        STATE.ti_index = kwargs["ti_index"]
    if "pod_index" in kwargs:
        STATE.pod_index = kwargs["pod_index"]


def _introduction(namespace: str, name: str) -> None:
    ctx = context()
    decision = reconcile_introduction(ctx, namespace, name)
    if decision is not None and decision.freed:
        ti = ctx.kube.get(
            f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}/{contract.TI_PLURAL}/{name}"
        )
        system = ((ti or {}).get("spec") or {}).get("systemRef", {}).get("name")
        if system:
            wake_waiting(namespace, str(system))


def wake_waiting(namespace: str, system: str) -> None:
    """Re-run admission for the introductions waiting on a freed slot (oldest first)."""
    ctx = context()
    waiting = sorted((p for p in _peers(namespace, system) if p.waiting), key=lambda p: p.order)
    for peer in waiting:
        reconcile_introduction(ctx, namespace, peer.name)
    reconcile_system(ctx, namespace, system)


@kopf.on.event(contract.GROUP, contract.VERSION, contract.TI_PLURAL)
def on_introduction(
    type: str, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
) -> None:
    _remember(kwargs)
    namespace = namespace or ""
    if type == "DELETED":
        ref = (body.get("spec") or {}).get("systemRef") or {}
        context().claims.release((namespace, str(ref.get("name", ""))), name)
        context().locks.forget(("ti", namespace, name))
        wake_waiting(namespace, str(ref.get("name", "")))
        return
    _introduction(namespace, name)


@kopf.on.event(contract.GROUP, contract.VERSION, contract.MTS_PLURAL)
def on_system(type: str, namespace: str | None, name: str, **kwargs: Any) -> None:
    _remember(kwargs)
    namespace = namespace or ""
    if type == "DELETED":
        STATE.systems.discard((namespace, name))
        return
    STATE.systems.add((namespace, name))
    reconcile_system(context(), namespace, name)
    if type in (None, "ADDED", "MODIFIED"):
        waiting = [p for p in _peers(namespace, name) if p.waiting]
        for peer in sorted(waiting, key=lambda p: p.order):
            reconcile_introduction(context(), namespace, peer.name)


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
def on_job(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
    _remember(kwargs)
    namespace = namespace or ""
    intro = _owner_intro(body)
    owners = (body.get("metadata") or {}).get("ownerReferences") or []
    if any(o.get("kind") == contract.MTS_KIND for o in owners):
        for owner in owners:
            reconcile_system(context(), namespace, str(owner.get("name")))
    elif intro:
        _introduction(namespace, intro)


@kopf.on.event("pods", labels=MANAGED)
def on_pod(body: kopf.Body, namespace: str | None, **kwargs: Any) -> None:
    _remember(kwargs)
    namespace = namespace or ""
    intro = _owner_intro(body)
    if intro and (is_preempted(body) or unschedulable(body)):
        _introduction(namespace, intro)


async def _resync_forever() -> None:
    """Periodic level-based pass over unfinished introductions and all systems."""
    loop = asyncio.get_running_loop()
    ticks = 0
    while True:
        ctx = STATE.ctx
        interval = ctx.settings.resync_seconds if ctx else 30.0
        await asyncio.sleep(interval)
        if ctx is None:
            continue
        ticks += 1
        try:
            stores = list(STATE.ti_index.items())
            counts: Counter[str] = Counter()
            for (namespace, _system), store in stores:
                for peer in list(store):
                    counts[peer.phase] += 1
                    if peer.phase not in api.TERMINAL:
                        await loop.run_in_executor(
                            None, reconcile_introduction, ctx, namespace, peer.name
                        )
            metrics.set_phase_counts(counts)
            every = max(1, round(ctx.settings.system_resync_seconds / max(interval, 0.001)))
            if ticks % every == 0:
                for namespace, name in sorted(STATE.systems):
                    await loop.run_in_executor(None, reconcile_system, ctx, namespace, name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("resync pass failed; retrying at the next tick")
