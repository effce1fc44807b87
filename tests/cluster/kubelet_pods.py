"""What a kubelet derives from a pod spec before it starts the container (for kubelet.py): env
values as a kubelet resolves them (``$(VAR)`` expansion, fieldRef, resourceFieldRef,
configMapKeyRef) and the pod's volumes as local folders (ConfigMap files, emptyDir, a bound
claim's hostPath, projected ServiceAccount token / ConfigMap / downward API)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from controlplane import ControlPlane
from kubernetes import client


def expand(text: str, defined: dict[str, str]) -> str:
    """A kubelet's expansion of ``$(VAR)`` in an env value: earlier variables are replaced,
    unknown references stay as written, ``$$`` is a literal ``$``."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("$(", i) and ")" in text[i:]:
            end = text.index(")", i)
            name = text[i + 2 : end]
            out.append(defined.get(name, text[i : end + 1]))
            i = end + 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def cpu_quantity(text: str) -> float:
    """'2' -> 2.0, '500m' -> 0.5 (the CPU quantities a pod spec uses)."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


class PodFiles:
    """Env values and volume folders of the pods that node ``node_name`` runs."""

    def __init__(self, cp: ControlPlane, core: client.CoreV1Api, node_name: str) -> None:
        self.cp = cp
        self.core = core
        self.node_name = node_name

    def env_value(self, pod: Any, container: Any, var: Any) -> str:
        """The value of one env var as a kubelet resolves it (value, fieldRef, resourceFieldRef,
        configMapKeyRef)."""
        if var.value_from is None:
            return str(var.value or "")
        source = var.value_from
        if source.field_ref is not None:
            path = source.field_ref.field_path
            for prefix, values in (
                ("metadata.annotations", pod.metadata.annotations),
                ("metadata.labels", pod.metadata.labels),
            ):
                if path.startswith(f"{prefix}['") and path.endswith("']"):
                    return str((values or {}).get(path[len(prefix) + 2 : -2], ""))
            fields = {
                "metadata.name": pod.metadata.name,
                "metadata.namespace": pod.metadata.namespace,
                "metadata.uid": pod.metadata.uid,
                "spec.nodeName": self.node_name,
                "spec.serviceAccountName": pod.spec.service_account_name,
                "status.podIP": "127.0.0.1",
                "status.hostIP": "127.0.0.1",
            }
            return str(fields[source.field_ref.field_path])
        if source.resource_field_ref is not None:
            ref = source.resource_field_ref
            kind, _, resource = ref.resource.partition(".")
            values = getattr(container.resources, kind) or {}
            divisor = cpu_quantity(str(ref.divisor or "1")) if resource == "cpu" else 1.0
            if resource != "cpu":
                raise ValueError(f"resourceFieldRef {ref.resource} is not supported by the harness")
            return str(math.ceil(cpu_quantity(str(values.get("cpu", "1"))) / divisor))
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            cm = self.core.read_namespaced_config_map(ref.name, pod.metadata.namespace)
            return str((cm.data or {})[ref.key])
        raise ValueError(f"env {var.name}: valueFrom kind not supported by the harness")

    def volumes(self, pod: Any, root: Path) -> dict[str, Path]:
        """{mountPath: local folder} for the (only) container."""
        by_name: dict[str, Path] = {}
        for vol in pod.spec.volumes or []:
            where = root / "volumes" / vol.name
            if vol.config_map is not None:
                cm = self.core.read_namespaced_config_map(
                    vol.config_map.name, pod.metadata.namespace
                )
                where.mkdir(parents=True, exist_ok=True)
                items = vol.config_map.items or [
                    client.V1KeyToPath(key=k, path=k) for k in (cm.data or {})
                ]
                for item in items:
                    (where / item.path).write_text((cm.data or {})[item.key])
            elif vol.empty_dir is not None:
                where.mkdir(parents=True, exist_ok=True)
            elif vol.persistent_volume_claim is not None:
                claim = vol.persistent_volume_claim.claim_name
                where = self.claim_path(claim, pod.metadata.namespace)
            elif vol.projected is not None:
                self.project(pod, vol.projected, where)
            else:
                raise ValueError(
                    f"volume {vol.name}: only configMap, emptyDir, PVC and projected volumes "
                    "are supported by the harness"
                )
            by_name[vol.name] = where
        (container,) = pod.spec.containers
        return {m.mount_path: by_name[m.name] for m in container.volume_mounts or []}

    def project(self, pod: Any, projected: Any, where: Path) -> None:
        """A projected volume: ServiceAccount token (TokenRequest bound to the pod), ConfigMap
        keys (kube-root-ca.crt) and downward API fields: what the ServiceAccount admission
        plugin mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
        where.mkdir(parents=True, exist_ok=True)
        ns = pod.metadata.namespace
        for src in projected.sources or []:
            if src.service_account_token is not None:
                sat = src.service_account_token
                token = self.token(pod, sat.audience, sat.expiration_seconds or 3607)
                (where / sat.path).write_text(token)
            elif src.config_map is not None:
                data = self.core.read_namespaced_config_map(src.config_map.name, ns).data or {}
                keys = [client.V1KeyToPath(key=k, path=k) for k in data]
                for item in src.config_map.items or keys:
                    (where / item.path).write_text(data[item.key])
            elif src.downward_api is not None:
                fields = {"metadata.namespace": ns, "metadata.name": pod.metadata.name}
                for item in src.downward_api.items or []:
                    (where / item.path).write_text(fields[item.field_ref.field_path])
            else:
                raise ValueError("projected volume: only token, configMap and downwardAPI sources")

    def claim_path(self, claim: str, namespace: str) -> Path:
        pvc = self.core.read_namespaced_persistent_volume_claim(claim, namespace)
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise ValueError(f"PersistentVolumeClaim {namespace}/{claim} is not bound")
        pv = self.core.read_persistent_volume(pvc.spec.volume_name)
        if pv.spec.host_path is None:
            raise ValueError(f"PersistentVolume {pv.metadata.name} is not a hostPath volume")
        return Path(pv.spec.host_path.path)

    def token(self, pod: Any, audience: str | None, seconds: int) -> str:
        """A TokenRequest token of the pod's ServiceAccount, bound to the pod (as a kubelet's)."""
        sa = pod.spec.service_account_name or "default"
        args = ["create", "token", sa, "-n", pod.metadata.namespace, f"--duration={seconds}s"]
        args += ["--bound-object-kind=Pod", f"--bound-object-name={pod.metadata.name}"]
        args += [f"--bound-object-uid={pod.metadata.uid}"]
        if audience:
            args.append(f"--audience={audience}")
        return self.cp.kubectl(*args).stdout.strip()
