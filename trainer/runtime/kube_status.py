"""Live progress from the trainer pod into its TaskIntroduction's ``status.progress``.

The pod runs as a dedicated ServiceAccount whose Role allows only ``get``/``patch`` on
``taskintroductions/status``; the operator owns ``status.conditions``. Patches are JSON merge
patches of ``{"status": {"progress": {...}}}`` on the /status subresource, so the two writers
never overwrite each other. Reporting is best effort: it never raises into training, and it
sends at most one patch every ``min_interval`` seconds (pending values are merged and sent
with the next patch; ``final=True`` or ``flush()`` sends immediately).
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from mutask.contract import ENV_INTRODUCTION, FINAL_PROGRESS, GROUP, TI_PLURAL, VERSION, Progress

log = logging.getLogger(__name__)

KEYS = {p.snake: p.value for p in Progress}
FINAL_KEYS = frozenset(p.snake for p in FINAL_PROGRESS)
Patcher = Callable[[str, str, dict[str, Any]], None]


def camel(key: str) -> str:
    """snake_case -> camelCase (known keys keep their CRD spelling, e.g. checkpointURI)."""
    if key in KEYS:
        return KEYS[key]
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_progress(progress: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in progress.items():
        if hasattr(value, "item"):  # numpy / torch scalars
            value = value.item()
        out[camel(str(key))] = value
    return out


def _kubernetes_patcher() -> Patcher:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG") or None
        )
    api = client.CustomObjectsApi()

    def patch(namespace: str, name: str, body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            TI_PLURAL,
            name,
            body,
            _content_type="application/merge-patch+json",
            _request_timeout=(5, 15),
        )

    return patch


class KubeStatusReporter:
    """Callable progress sink: ``reporter({"generation": 1, "best_score": 0.9})``."""

    def __init__(
        self,
        namespace: str,
        name: str,
        patch: Patcher,
        *,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace, self.name = namespace, name
        self._patch = patch
        self._min_interval = min_interval
        self._clock = clock
        self._last = float("-inf")
        self._pending: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KubeStatusReporter | None:
        """A reporter for ``$MUTASK_TASKINTRODUCTION`` (``namespace/name``), else None."""
        env = os.environ if env is None else env
        target = env.get(ENV_INTRODUCTION, "").strip()
        if not target:
            return None
        namespace, _, name = target.rpartition("/")
        if not namespace or not name:
            log.warning(
                "%s=%r is not namespace/name; progress not reported", ENV_INTRODUCTION, target
            )
            return None
        try:
            patcher = _kubernetes_patcher()
        except Exception as err:
            log.warning("cannot configure the Kubernetes client (%s); progress not reported", err)
            return None
        return cls(namespace, name, patcher)

    def __call__(self, progress: Mapping[str, object], *, final: bool = False) -> None:
        """Record progress; patch now unless rate-limited (final updates are never held)."""
        try:
            final = final or any(k in progress for k in FINAL_KEYS)
            with self._lock:
                self._pending.update(to_progress(progress))
                if not final and self._clock() - self._last < self._min_interval:
                    return
                self._send_locked()
        except Exception as err:  # never break training for a status update
            log.warning("progress report failed: %s", err)

    def flush(self) -> None:
        """Send what rate limiting held back."""
        try:
            with self._lock:
                if self._pending:
                    self._send_locked()
        except Exception as err:
            log.warning("progress flush failed: %s", err)

    def _send_locked(self) -> None:
        body = dict(self._pending)
        body["updateTime"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._last = self._clock()
        try:
            self._patch(self.namespace, self.name, {"status": {"progress": body}})
        except Exception as err:
            log.warning("patching %s/%s status failed: %s", self.namespace, self.name, err)
            return  # keep pending values for the next attempt
        self._pending.clear()
