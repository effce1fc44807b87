"""kopf wiring: indexes, watch-event handlers and timers that call the reconcilers.

:func:`registry` registers everything on a fresh kopf registry (the timers' intervals come from
the settings); ``main.operate`` runs it. No module state: the shared :class:`Context` lives in
kopf's memo and the indexes arrive with each call.

* Edges: events on TaskIntroductions, MultitaskSystems, trainer Jobs and JobSets and their pods
  (preempted or unschedulable ones) reconcile the object concerned at once.
* Levels: two kopf timers per MultitaskSystem re-check it (storage, root) and its unfinished
  introductions and their Jobs, so nothing a missed event hid stays wrong for long.
* TaskIntroductions get no kopf handler progress and no finalizer (deleting one cascades to its
  Job through ownerReferences; published weights are never touched). kopf timers need a
  finalizer on the object they run for, so MultitaskSystems carry ``mutask.dev/operator``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import kopf

from mutask import contract
from mutask.operator import api, metrics
from mutask.operator.admission import Peer, peer_of
from mutask.operator.context import Context, Indexes, SystemSeen
from mutask.operator.kube import Kube, load_client_config
from mutask.operator.objects import introduction_of, is_preempted, meta, unschedulable
from mutask.operator.reconcile import reconcile_introduction, reconcile_system
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_introduction, parse_system

log = logging.getLogger(__name__)
MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
TI = (contract.GROUP, contract.VERSION, contract.TI_PLURAL)
MTS = (contract.GROUP, contract.VERSION, contract.MTS_PLURAL)


def registry(settings: Settings) -> kopf.OperatorRegistry:
    """Every handler of the operator, on a registry of its own."""
    reg = kopf.OperatorRegistry()
    kopf.on.login(registry=reg)(login)
    kopf.on.startup(registry=reg)(startup)
    kopf.on.probe(id="introductions", registry=reg)(probe_introductions)
    kopf.index(*TI, id="peers_index", registry=reg)(peers_index)
    kopf.index(*MTS, id="systems_index", registry=reg)(systems_index)
    kopf.index("pods", labels=MANAGED, id="preempted_index", registry=reg)(preempted_index)
    kopf.index("pods", labels=MANAGED, id="unschedulable_index", registry=reg)(unschedulable_index)
    kopf.on.event(*TI, registry=reg)(on_introduction)
    kopf.on.event(*MTS, registry=reg)(on_system)
    kopf.on.event("batch", "v1", "jobs", labels=MANAGED, registry=reg)(on_job)
    # Multi-host runs (served once JobSet's CRD exists; kopf follows CRDs as they appear).
    kopf.on.event("jobset.x-k8s.io", "v1alpha2", "jobsets", labels=MANAGED, registry=reg)(on_job)
    kopf.on.event("pods", labels=MANAGED, registry=reg)(on_pod)
    kopf.timer(*MTS, id="recheck_introductions", interval=settings.resync_seconds, registry=reg)(
        recheck_introductions
    )
    kopf.timer(*MTS, id="recheck_system", interval=settings.system_resync_seconds, registry=reg)(
        recheck_system
    )
    return reg


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


async def startup(memo: kopf.Memo, **_: Any) -> None:
    """Serve /metrics and build the reconcilers' context (kept in kopf's memo)."""
    settings: Settings = memo["settings"]
    try:
        metrics.serve(settings.metrics_port)
    except OSError as err:  # keep reconciling; the missing /metrics shows in monitoring
        log.error("cannot serve metrics on port %s: %s", settings.metrics_port, err)
    kube = await asyncio.get_running_loop().run_in_executor(None, Kube.from_environment)
    memo["ctx"] = Context(settings=settings, kube=kube)


def _ctx(memo: Mapping[str, Any]) -> Context:
    ctx = memo.get("ctx")
    if not isinstance(ctx, Context):
        raise kopf.TemporaryError("operator context not initialised yet", delay=1)
    return ctx


def _indexes(kwargs: Mapping[str, Any]) -> Indexes:
    return Indexes(
        peers_index=kwargs.get("peers_index", {}),
        preempted_index=kwargs.get("preempted_index", {}),
        systems_index=kwargs.get("systems_index", {}),
        unschedulable_index=kwargs.get("unschedulable_index", {}),
    )


def probe_introductions(**kwargs: Any) -> dict[str, int]:
    """/healthz detail: introductions per state."""
    return dict(Counter(p.state for _, p in _indexes(kwargs).all_peers()))


def peers_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], Peer]:
    """TaskIntroductions by (namespace, system), as admission and the summary see them."""
    intro = parse_introduction(body)
    return {intro.system_key: peer_of(intro, body.get("status") or {})}


def systems_index(body: kopf.Body, **_: Any) -> dict[tuple[str, str], SystemSeen]:
    """MultitaskSystems by (namespace, name): what admission reads without a GET."""
    system = parse_system(body)
    return {(system.ref.namespace, system.ref.name): (system, dict(body.get("status") or {}))}


def preempted_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, str] | None:
    """Preempted trainer pods by (namespace, introduction)."""
    intro = introduction_of(body)
    if intro is None or not is_preempted(body):
        return None
    return {(namespace or "", intro): str(meta(body).get("uid") or meta(body).get("name"))}


def unschedulable_index(body: kopf.Body, namespace: str | None, **_: Any) -> dict[Any, str] | None:
    """The scheduler's message for each trainer pod no node fits, by (namespace, introduction)."""
    intro, why = introduction_of(body), unschedulable(body)
    if intro is None or why is None:
        return None
    return {(namespace or "", intro): why}


def _introduction(ctx: Context, idx: Indexes, namespace: str, name: str) -> None:
    plan = reconcile_introduction(ctx, idx, namespace, name)
    if plan is not None and plan.wakes is not None:
        wake_waiting(ctx, idx, *plan.wakes)


def wake_waiting(ctx: Context, idx: Indexes, namespace: str, system: str) -> None:
    """Re-run admission for the introductions waiting on a freed slot (oldest first)."""
    waiting = sorted((p for p in idx.peers(namespace, system) if p.waiting), key=lambda p: p.order)
    for peer in waiting:
        reconcile_introduction(ctx, idx, namespace, peer.name)
    reconcile_system(ctx, idx, namespace, system)


def on_introduction(
    type: str, body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any
) -> None:
    ctx, idx, namespace = _ctx(memo), _indexes(kwargs), namespace or ""
    if type == "DELETED":
        intro = parse_introduction(body)
        ctx.claims.release(intro.system_key, name)
        wake_waiting(ctx, idx, namespace, intro.system)
        return
    _introduction(ctx, idx, namespace, name)


def on_system(type: str, namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    ctx, idx, namespace = _ctx(memo), _indexes(kwargs), namespace or ""
    if type == "DELETED":
        return
    reconcile_system(ctx, idx, namespace, name)
    waiting = [p for p in idx.peers(namespace, name) if p.waiting]
    for peer in sorted(waiting, key=lambda p: p.order):
        reconcile_introduction(ctx, idx, namespace, peer.name)


def on_job(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    ctx, idx, namespace = _ctx(memo), _indexes(kwargs), namespace or ""
    owners = meta(body).get("ownerReferences") or []
    systems = [str(o.get("name")) for o in owners if o.get("kind") == contract.MTS_KIND]
    for system in systems:  # a root bootstrap Job
        reconcile_system(ctx, idx, namespace, system)
    intro = introduction_of(body)
    if intro and not systems:
        _introduction(ctx, idx, namespace, intro)


def on_pod(body: kopf.Body, namespace: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    intro = introduction_of(body)
    if intro and (is_preempted(body) or unschedulable(body)):
        _introduction(_ctx(memo), _indexes(kwargs), namespace or "", intro)


def recheck_introductions(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """Timer: re-read every unfinished introduction of this system (and its Job)."""
    ctx, idx = _ctx(memo), _indexes(kwargs)
    for peer in idx.peers(namespace or "", name):
        if peer.state not in api.TERMINAL:
            _introduction(ctx, idx, namespace or "", peer.name)
    metrics.set_state_counts(Counter(p.state for _, p in idx.all_peers()))


def recheck_system(namespace: str | None, name: str, memo: kopf.Memo, **kwargs: Any) -> None:
    """Timer: re-probe this system's storage and root, refresh its summary."""
    reconcile_system(_ctx(memo), _indexes(kwargs), namespace or "", name)
