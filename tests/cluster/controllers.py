"""Controllers with admission webhooks (Kueue today, JobSet next) run as local processes.

In a real cluster such a controller runs as a Deployment behind a Service that its webhook
configurations name. Here the binary (built from its Go module by .ci/controlplane.sh, which
also keeps a copy of the module's CRDs and webhook manifests under ``share/<name>/``) runs on
127.0.0.1, serving TLS with the control plane's own certificate (issued for 127.0.0.1 by the
cluster CA), and every ``service`` client config of its webhooks and CRD conversion webhooks is
rewritten to ``https://127.0.0.1:<port><path>`` with that CA as caBundle.

Webhook configurations are registered only once the server answers, and removed before the
process stops, so the apiserver never calls a dead webhook (a failurePolicy: Fail webhook would
otherwise block every Job in the later tests).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from controlplane import ClusterError, ControlPlane, free_port, wait_for

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def load_yaml(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [doc for p in paths for doc in yaml.safe_load_all(p.read_text()) if doc]


def conversion_crds(kustomization: Path) -> set[str]:
    """Plurals whose CRDs kubebuilder's kustomization patches with a conversion webhook."""
    text = kustomization.read_text()
    return {
        line.split("webhook_in_", 1)[1].removesuffix(".yaml")
        for line in text.splitlines()
        if line.strip().startswith("- path: patches/webhook_in_")
    }


@dataclass
class WebhookController:
    """One controller binary with its CRDs and (rewritten) webhook configurations."""

    name: str
    cp: ControlPlane
    workdir: Path
    argv: Callable[[WebhookController], list[str]]
    crds: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]
    conversion: set[str] = field(default_factory=set)  # CRD plurals converted by the webhook
    namespace: str | None = None
    port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "certs"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def _client_config(self, path: str) -> dict[str, Any]:
        ca = base64.b64encode(self.cp.ca_file().read_bytes()).decode()
        return {"url": f"https://127.0.0.1:{self.port}{path}", "caBundle": ca}

    def _crds(self) -> list[dict[str, Any]]:
        out = []
        for crd in self.crds:
            crd = copy.deepcopy(crd)
            if crd["spec"]["names"]["plural"] in self.conversion:
                crd["spec"]["conversion"] = {
                    "strategy": "Webhook",
                    "webhook": {
                        "clientConfig": self._client_config("/convert"),
                        "conversionReviewVersions": ["v1"],
                    },
                }
            out.append(crd)
        return out

    def _webhooks(self) -> list[dict[str, Any]]:
        out = []
        for config in self.webhooks:
            config = copy.deepcopy(config)
            config["metadata"] = {"name": f"{self.name}-{config['metadata']['name']}"}
            for hook in config.get("webhooks") or []:
                service = hook["clientConfig"].get("service") or {}
                hook["clientConfig"] = self._client_config(service.get("path", "/"))
            out.append(config)
        return out

    def webhook_names(self) -> list[tuple[str, str]]:
        return [(c["kind"], c["metadata"]["name"]) for c in self._webhooks()]

    def _serving(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.cp.ca_file()))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True

    def start(self) -> WebhookController:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_dir.mkdir(exist_ok=True)
        pki = self.cp.cluster_dir / "pki"
        shutil.copyfile(pki / "admin.crt", self.cert_dir / "tls.crt")
        shutil.copyfile(pki / "admin.key", self.cert_dir / "tls.key")
        if self.namespace:
            self.cp.kubectl("create", "namespace", self.namespace, check=False)
        self.cp.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            "-",
            input=yaml.safe_dump_all(self._crds()),
        )
        for crd in self.crds:
            self.cp.kubectl(
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                f"crd/{crd['metadata']['name']}",
            )
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.argv(self),
                env={**self.cp.env, "KUBECONFIG": str(self.cp.admin.kubeconfig)},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        try:
            wait_for(f"{self.name}'s webhook server on :{self.port}", self._alive_and_serving, 120)
        except TimeoutError as err:
            self.stop()
            raise ClusterError(f"{err}\n{self.log.read_text(errors='replace')[-3000:]}") from err
        self.cp.apply(self._webhooks())
        return self

    def _alive_and_serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with {self.process.returncode}:\n"
                f"{self.log.read_text(errors='replace')[-3000:]}"
            )
        return self._serving()

    def stop(self) -> None:
        for kind, name in self.webhook_names():
            self.cp.kubectl("delete", kind, name, "--ignore-not-found", check=False)
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kueue(cp: ControlPlane, workdir: Path, share: Path) -> WebhookController:
    """Kueue's manager for batch/v1 Jobs, with its CRDs and the webhooks it serves for them."""
    crds = load_yaml(sorted((share / "crd").glob("*.yaml")))
    hooks = load_yaml([share / "webhook" / "manifests.yaml"])

    def wanted(hook: Mapping[str, Any]) -> bool:  # only the integrations enabled below
        for rule in hook.get("rules") or []:
            if "kueue.x-k8s.io" in rule.get("apiGroups", []):
                return True
            if "batch" in rule.get("apiGroups", []) and "jobs" in rule.get("resources", []):
                return True
        return False

    for config in hooks:
        config["webhooks"] = [h for h in config.get("webhooks") or [] if wanted(h)]

    def argv(ctl: WebhookController) -> list[str]:
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": ctl.namespace,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{ctl.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": ctl.port, "host": "127.0.0.1", "certDir": str(ctl.cert_dir)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": ["batch/job"]},
        }
        path = ctl.workdir / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return [
            str(cp.bin / "kueue"),
            f"--config={path}",
            f"--visibility-server-port={free_port()}",
        ]

    return WebhookController(
        name="kueue",
        cp=cp,
        workdir=workdir,
        argv=argv,
        crds=crds,
        webhooks=[h for h in hooks if h.get("webhooks")],
        conversion=conversion_crds(share / "crd" / "kustomization.yaml"),
        namespace="kueue-system",
    )


@contextlib.contextmanager
def running(controller: WebhookController) -> Any:
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
