"""A minimal kubelet for one simulated node: it runs each pod's container as a local process.

The node is a plain Node (no kwok annotation, so kwok leaves it alone); this harness keeps it
Ready (status heartbeat and node Lease) and, for every pod the real scheduler binds to it:

  * materialises the pod's volumes as folders and resolves its environment as a kubelet does
    (kubelet_pods.py), then runs the container's command and args as a local process from this
    Python environment (the trainer image runs the same ``mutask`` entry point); the projected
    ServiceAccount token reaches clients through ``$KUBECONFIG`` (not the in-cluster path);
  * reports the container as running, then terminated with the process's exit code, and the pod
    phase Succeeded/Failed; a deleted pod's process gets SIGTERM, then SIGKILL after the grace
    period, and the pod is removed.

Without mount namespaces, a path under a volume's mountPath in the command, args or environment
is rewritten to the folder that backs it, and a declared containerPort found verbatim in the
args is rewritten to a free local port. The image, securityContext and resource limits are not
enforced. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlplane import ControlPlane, free_port
from kubelet_pods import PodFiles, expand
from kubernetes import client, config

HEARTBEAT_SECONDS = 5.0
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
POLL_SECONDS = 0.3


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalPod:
    namespace: str
    name: str
    uid: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    grace: float = 30.0
    exit_code: int | None = None
    error: str | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "container.log"


class LocalKubelet:
    """Acts as the kubelet of node ``node_name``; ``start()``/``stop()``."""

    def __init__(
        self,
        cp: ControlPlane,
        node_name: str,
        workdir: Path,
        *,
        labels: dict[str, str] | None = None,
        capacity: dict[str, str] | None = None,
    ) -> None:
        self.cp = cp
        self.node_name = node_name
        self.workdir = workdir
        self.labels = labels or {}
        self.capacity = capacity or {"cpu": "2", "memory": "8Gi", "pods": "20"}
        api = config.new_client_from_config(config_file=str(cp.admin.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
        self.files = PodFiles(cp, self.core, node_name)
        self.pods: dict[str, LocalPod] = {}
        self.finished: list[LocalPod] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0
        self.errors: list[str] = []

    def report(self) -> str:
        """What this kubelet did (for failure messages): errors, pods, exit codes, log tails."""
        lines = [f"kubelet {self.node_name}: errors {self.errors}"]
        for pod in [*self.finished, *self.pods.values()]:
            state = "running" if pod.exit_code is None else f"exit {pod.exit_code}"
            lines.append(f"--- pod {pod.namespace}/{pod.name}: {state} {pod.error or ''}")
            if pod.log.exists():
                lines.append(pod.log.read_text(errors="replace")[-2500:])
        return "\n".join(lines)

    # -- node -----------------------------------------------------------------------------
    def _conditions(self) -> list[dict[str, Any]]:
        now = _now()
        healthy = {
            "MemoryPressure": ("False", "KubeletHasSufficientMemory"),
            "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
            "PIDPressure": ("False", "KubeletHasSufficientPID"),
            "Ready": ("True", "KubeletReady"),
        }
        return [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": "local kubelet harness",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, (status, reason) in healthy.items()
        ]

    def _node_status(self) -> dict[str, Any]:
        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "conditions": self._conditions(),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.node_name},
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "mutask-local-kubelet",
                "containerRuntimeVersion": "local-process://",
                "kernelVersion": "",
                "osImage": "",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }

    def _register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **self.labels,
                },
            },
        }
        self.core.create_node(body)
        self.core.patch_node_status(self.node_name, {"status": self._node_status()})

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = time.monotonic()
        self.core.patch_node_status(self.node_name, {"status": {"conditions": self._conditions()}})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": 40, "renewTime": now}
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": spec}
            )
        except client.ApiException as err:
            if err.status != 404:
                raise
            lease = {"metadata": {"name": self.node_name, "namespace": "kube-node-lease"}}
            self.coordination.create_namespaced_lease("kube-node-lease", {**lease, "spec": spec})

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> LocalKubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._register()
        self._thread = threading.Thread(
            target=self._run, name=f"kubelet-{self.node_name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for pod in list(self.pods.values()):
            self._kill(pod, grace=5.0)
        with contextlib.suppress(client.ApiException):
            self.core.delete_node(self.node_name)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._heartbeat()
                self._sync()
            except client.ApiException as err:  # keep the node alive; tests read self.errors
                self.errors.append(f"{err.status} {err.reason}: {str(err.body)[:500]}")
            except Exception as err:
                self.errors.append(repr(err))
            self._stop.wait(POLL_SECONDS)

    def _sync(self) -> None:
        pods = self.core.list_pod_for_all_namespaces(
            field_selector=f"spec.nodeName={self.node_name}"
        ).items
        seen = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            local = self.pods.get(uid)
            if pod.metadata.deletion_timestamp is not None:
                if local is not None:
                    self._kill(local, grace=float(pod.spec.termination_grace_period_seconds or 30))
                    self._report_exit(local)
                    del self.pods[uid]
                    self.finished.append(local)
                self._remove(pod)
                continue
            if local is None and pod.status.phase == "Pending":
                self.pods[uid] = self._launch(pod)
            elif local is not None and local.process is not None:
                code = local.process.poll()
                if code is not None:
                    local.exit_code = code
                    self._report_exit(local)
                    del self.pods[uid]
                    self.finished.append(local)
        for uid in set(self.pods) - seen:  # deleted behind our back (force delete)
            pod_gone = self.pods.pop(uid)
            self._kill(pod_gone, grace=1.0)
            self.finished.append(pod_gone)

    # -- pods -----------------------------------------------------------------------------
    def _launch(self, pod: Any) -> LocalPod:
        m = pod.metadata
        local = LocalPod(m.namespace, m.name, m.uid, self.workdir / f"{m.namespace}_{m.name}")
        local.root.mkdir(parents=True, exist_ok=True)
        local.grace = float(pod.spec.termination_grace_period_seconds or 30)
        try:
            argv, env, cwd = self._container(pod, local)
        except Exception as err:
            local.error = f"cannot start the container: {err}"
            local.exit_code = 128
            self.core.patch_namespaced_pod_status(
                m.name, m.namespace, self._terminated(pod, 128, local.error)
            )
            return local
        with local.log.open("wb") as out:
            local.process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.core.patch_namespaced_pod_status(m.name, m.namespace, self._running(pod))
        return local

    def _container(self, pod: Any, local: LocalPod) -> tuple[list[str], dict[str, str], str]:
        (container,) = pod.spec.containers  # mutask trainer pods have one container
        mounts = self.files.volumes(pod, local.root)
        ports = {str(p.container_port): str(free_port()) for p in container.ports or []}

        def local_path(text: str) -> str:
            for mount_path, host in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if text == mount_path or text.startswith(mount_path.rstrip("/") + "/"):
                    return str(host) + text[len(mount_path.rstrip("/")) :]
            return text

        args = [local_path(a) for a in (container.command or []) + (container.args or [])]
        args = [ports.get(a, a) for a in args]
        exe = Path(sys.executable).parent / args[0]
        if exe.exists():
            args[0] = str(exe)
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "LANG": "C.UTF-8",
        }
        defined: dict[str, str] = {}
        for var in container.env or []:
            value = self.files.env_value(pod, container, var)
            if var.value_from is None:  # $(VAR) of an earlier variable, $$ a literal $
                value = expand(value, defined)
            defined[var.name] = value
            env[var.name] = local_path(value)
        token = mounts.get(SA_MOUNT, Path("/nonexistent")) / "token"
        if token.is_file():  # the projected ServiceAccount token, as a kubeconfig for clients
            kubeconfig = local.root / "serviceaccount.kubeconfig"
            sa = pod.spec.service_account_name or "default"
            user = f"{pod.metadata.namespace}-{sa}"
            kubeconfig.write_text(self.cp.kubeconfig_text(token.read_text(), user))
            env["KUBECONFIG"] = str(kubeconfig)
        cwd = local_path(container.working_dir) if container.working_dir else str(local.root)
        return args, env, cwd

    def _running(self, pod: Any) -> dict[str, Any]:
        now = _now()
        (container,) = pod.spec.containers
        return {
            "status": {
                "phase": "Running",
                "startTime": now,
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now}
                    for t in ("Initialized", "Ready", "ContainersReady")
                ],
                "containerStatuses": [
                    {
                        "name": container.name,
                        "image": container.image,
                        "imageID": "",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }

    def _terminated(self, pod: Any, code: int, message: str = "") -> dict[str, Any]:
        now = _now()
        (container,) = pod.spec.containers
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": now,
            "finishedAt": now,
        }
        if message:
            terminated["message"] = message[-1000:]
        return {
            "status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {
                        "type": t,
                        "status": "False",
                        "reason": "PodCompleted",
                        "lastTransitionTime": now,
                    }
                    for t in ("Ready", "ContainersReady")
                ],
                "containerStatuses": [
                    {
                        "name": container.name,
                        "image": container.image,
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            }
        }

    def _report_exit(self, local: LocalPod) -> None:
        code = 137 if local.exit_code is None else local.exit_code
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N
        if code > 255:
            code = 255
        local.exit_code = code
        with contextlib.suppress(client.ApiException):
            pod = self.core.read_namespaced_pod(local.name, local.namespace)
            self.core.patch_namespaced_pod_status(
                local.name, local.namespace, self._terminated(pod, code)
            )

    def _kill(self, local: LocalPod, grace: float) -> None:
        proc = local.process
        if proc is None or proc.poll() is not None:
            if proc is not None:
                local.exit_code = proc.returncode
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        local.exit_code = proc.returncode

    def _remove(self, pod: Any) -> None:
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespaced_pod(
                pod.metadata.name,
                pod.metadata.namespace,
                grace_period_seconds=0,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(uid=pod.metadata.uid)
                ),
            )
