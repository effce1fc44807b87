"""A Kubernetes API stand-in for tests: kmock's emulator (pinned 0.8) with the gaps filled.

kmock serves the REST API from memory with watch streams, but sets no uid / resourceVersion /
generation / creationTimestamp, answers create with 200, mixes /status into the main resource,
ignores resourceVersion preconditions, accepts any ``timeoutSeconds`` and has no garbage
collector. This subclass adds those, registers the resources the operator uses for discovery,
and runs on 127.0.0.1. It relies on kmock internals: keep kmock pinned.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import enums, rendering

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "manifests" / "crds"

BUILTIN = {
    "v1/pods": ("Pod", set()),
    "v1/configmaps": ("ConfigMap", set()),
    "v1/persistentvolumeclaims": ("PersistentVolumeClaim", {"status"}),
    "v1/events": ("Event", set()),
    "v1/serviceaccounts": ("ServiceAccount", set()),
    "batch/v1/jobs": ("Job", {"status"}),
}
VERBS = {"get", "list", "watch", "create", "patch", "delete"}
RV_PATH = "/metadata/resourceVersion"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _replace(target: Any, value: Any) -> None:
    """Swap the request payload in place (kmock's Request is frozen and identity-hashed)."""
    if isinstance(target, dict) and isinstance(value, dict):
        target.clear()
        target.update(value)
    elif isinstance(target, list) and isinstance(value, list):
        target[:] = value


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    """A ``Status`` failure body, as the API server answers errors."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "code": code,
        "message": message,
    }
    return aiohttp.web.json_response(body, status=code)


@attrs.define(kw_only=True)
class FakeKubernetes(kmock.KubernetesEmulator):
    """kmock's emulator behaving closer to a real API server (see module docstring)."""

    _counter: Any = attrs.field(factory=lambda: itertools.count(1000), init=False)
    _with_status: set[str] = attrs.field(factory=set, init=False)

    def register_builtin(self) -> None:
        # kopf's observers wait for these two to be discoverable before any watch starts.
        self.resources["v1/namespaces"] = kmock.ResourceInfo(
            kind="Namespace", namespaced=False, verbs=VERBS
        )
        self.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
            kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
        )
        for key, (kind, subresources) in BUILTIN.items():
            self.resources[key] = kmock.ResourceInfo(
                kind=kind, namespaced=True, verbs=VERBS, subresources=subresources
            )
            if "status" in subresources:
                self._with_status.add(key.rsplit("/", 1)[-1])

    def register_crd(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            subresources = set(version.get("subresources") or {})
            self.resources[f"{spec['group']}/{version['name']}/{names['plural']}"] = (
                kmock.ResourceInfo(
                    kind=names["kind"],
                    singular=names.get("singular"),
                    namespaced=spec["scope"] == "Namespaced",
                    verbs=VERBS,
                    shortnames=set(names.get("shortNames") or []),
                    categories=set(names.get("categories") or []),
                    subresources=subresources,
                )
            )
            if "status" in subresources:
                self._with_status.add(names["plural"])

    def register_crds(self) -> None:
        for path in sorted(CRDS.glob("*.yaml")):
            self.register_crd(yaml.safe_load(path.read_text()))

    def _next_rv(self) -> str:
        return str(next(self._counter))

    def _key(self, request: rendering.Request) -> Any:
        return (request.resource, request.namespace, request.name)

    def _stored(self, request: rendering.Request) -> dict[str, Any] | None:
        key = self._key(request)
        if key in self.objects and not self.objects[key].deleted:
            return dict(self.objects[key].raw)
        return None

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # kmock matches each request against its whole request log (O(requests so far));
        # keep only the current one (nothing here asserts on the log).
        del self._requests[:-1]
        bad = self._bad_params(request)
        if bad:
            return _status(400, "BadRequest", bad)
        res = request.resource
        plural = getattr(res, "plural", None)
        if (
            res is not None
            and request.action == enums.action.CREATE
            and isinstance(request.data, dict)
        ):
            data = copy.deepcopy(request.data)
            md = data.setdefault("metadata", {})
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and not md.get("namespace"):
                md["namespace"] = request.namespace
            md.update(
                uid=str(uuid.uuid4()),
                resourceVersion=self._next_rv(),
                generation=1,
                creationTimestamp=_now(),
            )
            _replace(request.data, data)
        elif res is not None and request.action == enums.action.UPDATE and request.name:
            refused = self._precondition_failed(request)
            if refused:
                return _status(*refused)
            _replace(request.data, self._prepare_update(request, plural))
        response = await super()._handle(request)
        if request.action == enums.action.CREATE and response.status == 200:
            response.set_status(201)
        if request.action == enums.action.DELETE and response.status == 200:
            await self._collect_garbage()
        return response

    @staticmethod
    def _bad_params(request: rendering.Request) -> str | None:
        """Query parameters a real API server refuses: ``timeoutSeconds`` must be an integer
        (``timeoutSeconds=300.0`` is a 400, so a watch asked that way never starts)."""
        timeout = (request.params or {}).get("timeoutSeconds")
        if timeout is not None and not timeout.lstrip("-").isdigit():
            return f"timeoutSeconds={timeout!r}: not an integer"
        return None

    def _precondition_failed(self, request: rendering.Request) -> tuple[int, str, str] | None:
        """A resourceVersion in a patch is a precondition, as on a real API server: a merge
        patch naming another version gets 409 Conflict, a JSON patch whose ``test`` of
        /metadata/resourceVersion fails gets 422 (kopf's finalizer patches rely on both)."""
        current = self._stored(request)
        if current is None:
            return None
        have = str(current["metadata"].get("resourceVersion"))
        data = request.data
        if isinstance(data, dict):
            wanted = (data.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and str(wanted) != have:
                return 409, "Conflict", f"the object has been modified ({have}, not {wanted})"
        elif isinstance(data, list):
            for op in data:
                tests_version = op.get("op") == "test" and op.get("path") == RV_PATH
                if tests_version and str(op.get("value")) != have:
                    return 422, "Invalid", f"test failed: resourceVersion is {have}"
        return None

    def _prepare_update(self, request: rendering.Request, plural: str | None) -> Any:
        data = copy.deepcopy(request.data)
        rv = self._next_rv()
        if isinstance(data, list):  # JSON patch (kopf uses it for finalizers/annotations)
            return [*data, {"op": "replace", "path": "/metadata/resourceVersion", "value": rv}]
        if not isinstance(data, dict):
            return data
        if plural in self._with_status:
            if request.subresource == "status":
                data = {k: v for k, v in data.items() if k == "status"}
            else:
                data.pop("status", None)
        md = data.setdefault("metadata", {})
        md.pop("uid", None)
        md["resourceVersion"] = rv
        current = self._stored(request)
        if current is not None and "spec" in data and request.subresource is None:
            old_spec = current.get("spec") or {}
            new_spec = {**old_spec, **data["spec"]}
            if new_spec != old_spec:
                md["generation"] = int(current["metadata"].get("generation", 1)) + 1
        return data

    async def _collect_garbage(self) -> None:
        """Delete dependents whose owners are gone (the controller-manager's GC, simplified)."""
        while True:
            live = {
                obj.raw["metadata"].get("uid") for obj in self.objects.values() if not obj.deleted
            }
            orphans = [
                key
                for key, obj in self.objects.items()
                if not obj.deleted
                and any(
                    o.get("uid") not in live
                    for o in obj.raw["metadata"].get("ownerReferences") or []
                )
            ]
            if not orphans:
                return
            for key in orphans:
                resource = key[0]
                async with self._lock:
                    raw = self.objects[key].raw
                    self.objects[key].delete()
                    await self._buses[resource].put({"type": "DELETED", "object": raw})

    def _get_resources(self) -> list[Any]:
        # kmock derives resources from every stored object on each request (O(N)); all ours
        # are declared up front, so the declared ones suffice.
        return kmock.KubernetesScaffold._get_resources(self)

    # O(1) object access (kmock scans every stored object per request: 200+ ms at 1,000 objects).
    def _lookup(self, request: rendering.Request, name: str | None = None) -> Any:
        store: dict[Any, Any] = self.objects._objects
        namespace = request.namespace
        if name is None:
            name = request.name
        if name is None and isinstance(request.data, dict):  # create: name in the body
            md = request.data.get("metadata") or {}
            name, namespace = md.get("name"), namespace or md.get("namespace")
        return store.get((request.resource, namespace, name))

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        obj = self._lookup(request)
        if obj is None or obj.deleted:
            raise kmock.KubernetesObjectNotFoundError()
        return obj.raw

    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        obj = self._lookup(request)
        return obj.raw

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return self._lookup(request).last.raw

    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self._lookup(request).last.raw

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_list(request)
        if isinstance(result, dict) and request.resource is not None:
            info = self.resources[request.resource]
            result["kind"] = f"{info.kind}List"
            result["apiVersion"] = (
                f"{request.resource.group}/{request.resource.version}"
                if request.resource.group
                else request.resource.version
            )
        return result

    # Helpers for tests -------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(resource), namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(dict(self.objects[key].raw))
        return None

    def all(self, resource: str) -> list[dict[str, Any]]:
        res = kmock.resource(resource)
        return [
            copy.deepcopy(dict(o.raw))
            for k, o in self.objects.items()
            if k[0] == res and not o.deleted
        ]


@attrs.define
class RunningApi:
    url: str
    fake: FakeKubernetes
    loop: asyncio.AbstractEventLoop

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path


@contextmanager
def serve_fake_api() -> Iterator[RunningApi]:
    """Run FakeKubernetes on 127.0.0.1 (random port) in a background thread."""
    started = threading.Event()
    holder: dict[str, Any] = {}
    stop: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        fake = FakeKubernetes()
        fake.register_builtin()
        fake.register_crds()
        async with fake, kmock.Server(fake, host="127.0.0.1") as server:
            holder["api"] = RunningApi(
                str(server.url).rstrip("/"), fake, asyncio.get_running_loop()
            )
            started.set()
            await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("the fake API server did not start")
    try:
        yield holder["api"]
    finally:
        api = holder["api"]
        api.loop.call_soon_threadsafe(lambda: stop.set() if stop else None)
        thread.join(10)
