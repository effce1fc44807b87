"""A thin JSON REST layer over the official ``kubernetes`` client's ApiClient.

Plain dicts in and out (the builders produce dicts; the typed models would only re-validate
them), merge patches, get-before-create with 409 handling, status commits with a
resourceVersion precondition, best-effort events. Client configuration is loaded here only.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from kubernetes import client, config

from mutask import contract
from mutask.operator import api

log = logging.getLogger(__name__)

MERGE = "application/merge-patch+json"


class KubeError(Exception):
    """A non-2xx answer of the API server."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:300]}")
        self.status = status
        self.reason = reason
        self.body = body


def ti_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}/{contract.TI_PLURAL}"
    return f"{base}/{name}" if name else base


def mts_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{contract.GROUP}/{contract.VERSION}/namespaces/{namespace}/{contract.MTS_PLURAL}"
    return f"{base}/{name}" if name else base


def job_path(namespace: str, name: str = "") -> str:
    base = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    return f"{base}/{name}" if name else base


JOBSET_GROUP_VERSION = "jobset.x-k8s.io/v1alpha2"


def jobset_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{JOBSET_GROUP_VERSION}/namespaces/{namespace}/jobsets"
    return f"{base}/{name}" if name else base


def core_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


def path_of(kind: str, namespace: str, name: str = "") -> str:
    """The REST path of one of the objects the operator handles (or their collection)."""
    if kind == "ConfigMap":
        return core_path(namespace, "configmaps", name)
    paths = {
        contract.TI_KIND: ti_path,
        contract.MTS_KIND: mts_path,
        "Job": job_path,
        "JobSet": jobset_path,
    }
    return paths[kind](namespace, name)


def load_client_config() -> client.Configuration:
    """Load in-cluster credentials, else the kubeconfig named by $KUBECONFIG (read now, not at
    import time as the client's default does), else ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        config.load_kube_config(config_file=path)  # type: ignore[no-untyped-call]
    return client.Configuration.get_default_copy()


class Kube:
    """Synchronous JSON access to the API server (thread-safe: one urllib3 pool)."""

    def __init__(self, api_client: client.ApiClient, timeout: tuple[float, float] = (5.0, 30.0)):
        self.api_client = api_client
        self.timeout = timeout

    @classmethod
    def from_environment(cls) -> Kube:
        """In-cluster service account, else $KUBECONFIG / ~/.kube/config."""
        cfg = load_client_config()
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, 32)
        return cls(client.ApiClient(cfg))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        params = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        resp = self.api_client.call_api(*params, _request_timeout=self.timeout)
        data = resp.read()  # type: ignore[no-untyped-call]
        text = data.decode() if isinstance(data, bytes) else str(data or "")
        if not 200 <= resp.status < 300:
            raise KubeError(resp.status, str(resp.reason), text)
        return json.loads(text) if text else None

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            result = self.request("GET", path)
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        return result if isinstance(result, dict) else None

    def serves(self, group_version: str) -> bool:
        """Whether the API server serves ``group_version`` (e.g. JobSet's CRD is installed)."""
        return self.get(f"/apis/{group_version}") is not None

    def create(self, collection: str, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create, or return the existing object on 409: (object, created?)."""
        name = body["metadata"]["name"]
        try:
            result = self.request("POST", collection, dict(body))
            return (result if isinstance(result, dict) else dict(body)), True
        except KubeError as err:
            if err.status != 409:
                raise
        existing = self.get(f"{collection}/{name}")
        if existing is None:  # deleted in between: let the next reconcile retry
            raise KubeError(409, "Conflict", f"{collection}/{name} exists but cannot be read")
        return existing, False

    def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            result = self.request("PATCH", path, dict(body), content_type=MERGE)
        except KubeError as err:
            if err.status == 404:
                return None
            raise
        return result if isinstance(result, dict) else None

    def commit_status(
        self, path: str, changes: Mapping[str, Any], resource_version: str | None
    ) -> bool:
        """Merge-patch ``status`` if the object is still at ``resource_version``.

        False on 409 Conflict (someone wrote the object since it was read: the write that
        conflicted brings a watch event, and with it a fresh reconcile) or 404 (it is gone).
        """
        body: dict[str, Any] = {"status": dict(changes)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            self.request("PATCH", f"{path}/status", body, content_type=MERGE)
        except KubeError as err:
            if err.status in (404, 409):
                log.debug("status of %s not written (%s)", path, err.status)
                return False
            raise
        return True

    def delete(self, path: str, propagation: str = "Background") -> bool:
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            self.request("DELETE", path, body)
        except KubeError as err:
            if err.status == 404:
                return False
            raise
        return True

    def post_event(
        self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False
    ) -> None:
        """Record a core/v1 Event on ``obj``; failures are logged, never raised."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{time.time_ns():x}{uuid.uuid4().hex[:4]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": api.MANAGED_BY},
            "reportingComponent": api.OPERATOR,
            "reportingInstance": api.MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.request("POST", core_path(namespace, "events"), event)
        except Exception as err:  # events are best effort
            log.warning("could not post event %s on %s: %s", reason, meta.get("name"), err)
