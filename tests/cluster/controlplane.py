"""The test control plane: a real kube-apiserver, etcd, controller-manager and scheduler plus the
kwok controller, started with kwokctl's binary runtime on 127.0.0.1 from the binaries that
``.ci/controlplane.sh`` builds and caches (~/.cache/mutask/controlplane/...).

RBAC authorization is on, the default admission plugins plus OwnerReferencesPermissionEnforcement
run, and an audit log records every request by a ServiceAccount (so tests can prove that the
operator and the trainer never met a 403). Nodes are simulated GKE pools (gke_pools.py) whose
pods follow kwok-stages.yaml. One ControlPlane serves a whole pytest session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "controlplane.sh"
STAGES = Path(__file__).with_name("kwok-stages.yaml")
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "kwokctl",
)
T = TypeVar("T")


class ClusterError(RuntimeError):
    """The control plane could not be built, started or asked something."""


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_dir() -> Path:
    """The folder of the cached binaries (raises, naming the fix, when they are not built)."""
    out = subprocess.run(["bash", str(SCRIPT), "bin-dir"], capture_output=True, text=True)
    path = Path(out.stdout.strip())
    missing = [b for b in BINARIES if not (path / b).is_file()]
    if out.returncode != 0 or missing:
        raise ClusterError(
            f"control plane binaries missing from {path} ({', '.join(missing)}): "
            f"run `bash .ci/install-tools.sh controlplane` (builds them once, ~30 min)"
        )
    return path


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except ClusterError:  # a component died: waiting longer cannot help
            raise
        except Exception as err:  # keep polling through transient errors
            last = err
        time.sleep(0.25)
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}" + (f": {last}" if last else "")
    )


AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts"]
  - level: None
"""


@dataclass
class Identity:
    """A kubeconfig for one user (admin or a ServiceAccount token)."""

    kubeconfig: Path
    user: str


class ControlPlane:
    """One kwokctl cluster; ``start()`` then ``stop()`` (idempotent)."""

    def __init__(self, workdir: Path, name: str = "mutask-test") -> None:
        self.workdir = workdir
        self.name = name
        self.bin = bin_dir()
        self.env = {
            **os.environ,
            "KWOK_WORKDIR": str(workdir / "kwok"),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("KUBECONFIG", None)
        self.cluster_dir = workdir / "kwok" / "clusters" / name
        self.port = 0
        self.started = False

    # -- lifecycle ------------------------------------------------------------------------
    def config(self) -> str:
        ports = {
            key: free_port()
            for key in (
                "kubeApiserverPort",
                "etcdPort",
                "etcdPeerPort",
                "kubeControllerManagerPort",
                "kubeSchedulerPort",
                "kwokControllerPort",
            )
        }
        self.port = ports["kubeApiserverPort"]
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        options = {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "securePort": True,
            "kubeAuthorization": True,
            "kubeAdmission": True,
            "kubeAuditPolicy": str(policy),
            "disableQPSLimits": True,
            "etcdBinary": str(self.bin / "etcd"),
            "kubeApiserverBinary": str(self.bin / "kube-apiserver"),
            "kubeControllerManagerBinary": str(self.bin / "kube-controller-manager"),
            "kubeSchedulerBinary": str(self.bin / "kube-scheduler"),
            "kubectlBinary": str(self.bin / "kubectl"),
            "kwokControllerBinary": str(self.bin / "kwok"),
            **ports,
        }
        patches = [
            {  # kwok plays only the nodes annotated as simulated; the kubelet harness the rest
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false", "override": True},
                    {
                        "key": "manage-nodes-with-annotation-selector",
                        "value": "kwok.x-k8s.io/node=fake",
                    },
                ],
            },
            {  # as strict as the strictest managed clusters about ownerReferences
                "name": "kube-apiserver",
                "extraArgs": [
                    {
                        "key": "enable-admission-plugins",
                        "value": "OwnerReferencesPermissionEnforcement",
                    }
                ],
            },
        ]
        head = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
            "componentsPatches": patches,
        }
        return yaml.safe_dump(head, sort_keys=False) + "---\n" + STAGES.read_text()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "kwokctl.yaml"
        cfg.write_text(self.config())
        self.started = True  # from here on, stop() must clean up whatever got started
        self.kwokctl(
            "create",
            "cluster",
            "--runtime",
            "binary",
            "--config",
            str(cfg),
            "--kubeconfig",
            "",
            "--wait",
            "2m",
        )
        self.admin = Identity(self.cluster_dir / "kubeconfig.yaml", "kubernetes-admin")
        wait_for(
            "the default ServiceAccount", lambda: self.get("serviceaccount", "default", "default")
        )

    def stop(self) -> None:
        if not self.started:
            return
        self.started = False
        pids = [int(p.read_text()) for p in (self.cluster_dir / "pids").glob("*.pid")]
        proc = subprocess.run(
            [str(self.bin / "kwokctl"), "delete", "cluster", "--name", self.name],
            env=self.env,
            capture_output=True,
            text=True,
        )
        # kwokctl signals the components and returns; wait until they are gone (or kill them).
        deadline = time.monotonic() + 30
        while (alive := [p for p in pids if _running(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.returncode != 0:
            raise ClusterError(f"kwokctl delete cluster failed: {proc.stderr[-2000:]}")

    def kwokctl(self, *args: str) -> str:
        proc = subprocess.run(
            [str(self.bin / "kwokctl"), *args, "--name", self.name],
            env=self.env,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            logs = self.cluster_dir / "logs"
            tails = (
                "".join(
                    f"\n--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                    for p in sorted(logs.glob("*.log"))
                )
                if logs.is_dir()
                else ""
            )
            raise ClusterError(f"kwokctl {' '.join(args)} failed: {proc.stderr[-3000:]}{tails}")
        return proc.stdout

    # -- kubectl --------------------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        as_: Identity | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        who = as_ or self.admin
        proc = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(who.kubeconfig), *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} ({who.user}): {proc.stderr.strip()}")
        return proc

    def apply(self, objs: Iterable[Mapping[str, Any]] | str, *, as_: Identity | None = None) -> str:
        text = objs if isinstance(objs, str) else yaml.safe_dump_all(list(objs))
        return self.kubectl("apply", "-f", "-", as_=as_, input=text).stdout

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        proc = self.kubectl("get", kind, name, *ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise ClusterError(f"kubectl get {kind} {name}: {proc.stderr.strip()}")
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def list(self, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        sel = ["-l", selector] if selector else []
        proc = self.kubectl("get", kind, "-n", namespace, *sel, "-o", "json")
        items: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
        return items

    # -- identities -----------------------------------------------------------------------
    def token_identity(self, namespace: str, sa: str, *, audience: str | None = None) -> Identity:
        """A kubeconfig holding a TokenRequest token of ServiceAccount ``namespace/sa``."""
        args = ["create", "token", sa, "-n", namespace, "--duration", "2h"]
        if audience:
            args += ["--audience", audience]
        token = self.kubectl(*args).stdout.strip()
        path = self.workdir / "identities" / f"{namespace}.{sa}.kubeconfig"
        path.parent.mkdir(exist_ok=True)
        path.write_text(self.kubeconfig_text(token, f"{namespace}-{sa}"))
        return Identity(path, f"system:serviceaccount:{namespace}:{sa}")

    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ca_file(self) -> Path:
        return self.cluster_dir / "pki" / "ca.crt"

    def kubeconfig_text(self, token: str, user: str) -> str:
        ca = base64.b64encode(self.ca_file().read_bytes()).decode()
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": self.name,
                        "cluster": {"server": self.server(), "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": self.name, "user": user}}],
                "current-context": user,
            }
        )

    # -- audit log ------------------------------------------------------------------------
    def audit_events(self, since: int = 0) -> list[dict[str, Any]]:
        """Audit events (every request by a ServiceAccount), from line ``since`` of the log."""
        path = self.cluster_dir / "logs" / "audit.log"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()[since:]
        return [json.loads(line) for line in lines if line.strip()]

    def audit_mark(self) -> int:
        """A position in the audit log (pass it as ``since``)."""
        path = self.cluster_dir / "logs" / "audit.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def requests(self, user: str, since: int = 0) -> list[tuple[str, str, str, str, str]]:
        """(decision, verb, apiGroup, resource[/subresource], namespace) of each request by
        ``user``; decision is the RBAC authorizer's ("allow" or "forbid")."""
        out = []
        for event in self.audit_events(since):
            ref = event.get("objectRef") or {}
            if event.get("user", {}).get("username") != user or not ref:
                continue
            res = ref.get("resource", "")
            if ref.get("subresource"):
                res += "/" + ref["subresource"]
            decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision", "")
            verb = str(event.get("verb"))
            out.append((decision, verb, ref.get("apiGroup", ""), res, ref.get("namespace", "")))
        return out

    def denied(self, user: str, since: int = 0) -> list[str]:
        """Requests by ``user`` that RBAC forbade, as 'verb group/resource namespace' (a 403
        for a namespace being deleted is admission's, not RBAC's, and is not listed)."""
        return [
            f"{v} {g}/{r} {ns}" for d, v, g, r, ns in self.requests(user, since) if d == "forbid"
        ]

    def used(self, user: str, since: int = 0) -> set[tuple[str, str, str]]:
        """(apiGroup, resource[/subresource], verb) of every request RBAC allowed ``user``."""
        return {(g, r, v) for d, v, g, r, _ in self.requests(user, since) if d == "allow"}
