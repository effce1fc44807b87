"""Controllers with admission webhooks (Kueue, JobSet) run as local processes.

In a real cluster such a controller runs as a Deployment behind a Service that its webhook
configurations name. Here its binary (built from its Go module by .ci/controlplane.sh, which
also keeps the module's CRDs and webhook manifests under ``share/<name>/``) runs on 127.0.0.1,
and every ``service`` client config of its webhooks and CRD conversion webhooks is rewritten
to ``https://127.0.0.1:<port><path>`` with a test CA as caBundle. The serving certificate, from
that CA, names both 127.0.0.1 and the in-cluster Service DNS name, so a controller that manages
its own certificates (Kueue's internal cert management) finds a valid one in its Secret and
keeps it instead of issuing one the apiserver could not verify for 127.0.0.1.

Webhook configurations are removed before the process stops, so the apiserver never calls a
dead webhook (a failurePolicy: Fail webhook would otherwise block every Job of later tests).

Adding a controller is a factory like :func:`kueue` or :func:`jobset`: its binary and manifests
from .ci/controlplane.sh, the webhooks it serves, its Secret and its configuration flags.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
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
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def load_yaml(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [doc for p in paths for doc in yaml.safe_load_all(p.read_text()) if doc]


def conversion_crds(kustomization: Path) -> set[str]:
    """Plurals whose CRDs kubebuilder's kustomization patches with a conversion webhook."""
    return {
        line.split("webhook_in_", 1)[1].removesuffix(".yaml")
        for line in kustomization.read_text().splitlines()
        if line.strip().startswith("- path: patches/webhook_in_")
    }


@dataclass(frozen=True)
class Certs:
    """PEM bytes of a CA and of a serving certificate it signed."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes


def issue(ca_name: str, dns_names: list[str]) -> Certs:
    """A CA (named ``ca_name``, also as a DNS SAN, as cert-controller checks) and a server
    certificate for ``dns_names`` and 127.0.0.1, valid for a year; RSA keys."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ca_name)]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def key_pem(k: rsa.RSAPrivateKey) -> bytes:  # PKCS#1, what cert-controller parses
        return k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    pem = serialization.Encoding.PEM
    return Certs(ca.public_bytes(pem), key_pem(ca_key), cert.public_bytes(pem), key_pem(key))


@dataclass
class WebhookController:
    """One controller binary with its CRDs and (rewritten) webhook configurations."""

    name: str
    cp: ControlPlane
    workdir: Path
    argv: Callable[[WebhookController], list[str]]
    crds: list[dict[str, Any]]
    webhooks: list[dict[str, Any]]
    certs: Certs
    namespace: str
    conversion: set[str] = field(default_factory=set)  # CRD plurals converted by the webhook
    secret: str | None = None  # Secret the controller reads its serving certificate from
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
        ca = base64.b64encode(self.certs.ca_cert).decode()
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

    def _established(self, name: str) -> bool:
        crd = self.cp.get("crd", name) or {}
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    def _serving(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with {self.process.returncode}:\n"
                f"{self.log.read_text(errors='replace')[-3000:]}"
            )
        ctx = ssl.create_default_context(cadata=self.certs.ca_cert.decode())
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock,
            ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
        ):
            return True

    def start(self) -> WebhookController:
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        (self.cert_dir / "tls.crt").write_bytes(self.certs.cert)
        (self.cert_dir / "tls.key").write_bytes(self.certs.key)
        self.cp.kubectl("create", "namespace", self.namespace, check=False)
        if self.secret:
            data = {
                "ca.crt": self.certs.ca_cert,
                "ca.key": self.certs.ca_key,
                "tls.crt": self.certs.cert,
                "tls.key": self.certs.key,
            }
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": self.secret, "namespace": self.namespace},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            }
            self.cp.apply([secret])
        text = yaml.safe_dump_all(self._crds())
        self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)
        for crd in self.crds:  # (kubectl wait errs on a CRD whose status is not written yet)
            name = crd["metadata"]["name"]
            wait_for(f"CRD {name} Established", lambda name=name: self._established(name), 60)
        self.cp.apply(self._webhooks())  # before start: a cert rotator waits to inject them
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
            wait_for(f"{self.name}'s webhook server on :{self.port}", self._serving, 120)
        except (TimeoutError, ClusterError) as err:
            self.stop()
            raise ClusterError(f"{err}\n{self.log.read_text(errors='replace')[-3000:]}") from err
        return self

    def stop(self) -> None:
        for config in self._webhooks():
            name = config["metadata"]["name"]
            self.cp.kubectl("delete", config["kind"], name, "--ignore-not-found", check=False)
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for crd in self.crds:  # with them every object of theirs; nothing calls a dead webhook
            name = crd["metadata"]["name"]
            self.cp.kubectl(
                "delete", "crd", name, "--ignore-not-found", "--wait=false", check=False
            )


def kueue(cp: ControlPlane, workdir: Path, share: Path) -> WebhookController:
    """Kueue's manager for batch/v1 Jobs, with its CRDs and the webhooks it serves for them.

    Kueue v0.17 reads a metrics certificate from a fixed /etc path unless it manages its own
    certificates, so it runs with internal cert management on, its Secret pre-filled. Its
    optional visibility API server (pending-workloads listing) is off: it authenticates its
    callers through in-cluster configuration only."""
    docs = load_yaml(sorted((share / "crd").glob("*.yaml")))
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    hooks = load_yaml([share / "webhook" / "manifests.yaml"])

    def wanted(hook: Mapping[str, Any]) -> bool:  # only the integrations enabled below
        for rule in hook.get("rules") or []:
            groups, resources = rule.get("apiGroups", []), rule.get("resources", [])
            if "kueue.x-k8s.io" in groups or ("batch" in groups and "jobs" in resources):
                return True
        return False

    for config in hooks:
        config["webhooks"] = [h for h in config.get("webhooks") or [] if wanted(h)]
    namespace, service = "kueue-system", "kueue-webhook-service"

    def argv(ctl: WebhookController) -> list[str]:
        config = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": namespace,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{ctl.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": ctl.port, "host": "127.0.0.1", "certDir": str(ctl.cert_dir)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {
                "enable": True,
                "webhookServiceName": service,
                "webhookSecretName": "kueue-webhook-server-cert",
            },
            # The on-demand visibility API server needs in-cluster delegated authentication.
            "featureGates": {"VisibilityOnDemand": False},
            "manageJobsWithoutQueueName": False,
            "integrations": {"frameworks": ["batch/job"]},
        }
        path = ctl.workdir / "kueue-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return [str(cp.bin / "kueue"), f"--config={path}"]

    return WebhookController(
        name="kueue",
        cp=cp,
        workdir=workdir,
        argv=argv,
        crds=crds,
        webhooks=[h for h in hooks if h.get("webhooks")],
        certs=issue("kueue-ca", [f"{service}.{namespace}.svc"]),
        namespace=namespace,
        conversion=conversion_crds(share / "crd" / "kustomization.yaml"),
        secret="kueue-webhook-server-cert",
    )


def json_patched(doc: dict[str, Any], ops: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """``doc`` with kustomize's JSON 6902 ``add``/``replace`` operations applied (what the
    upstream webhook kustomization does, e.g. JobSet's pod webhooks' objectSelector)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        if op.get("op") not in ("add", "replace"):
            raise ClusterError(f"unsupported JSON patch operation {op}")
        *parents, last = [p for p in str(op["path"]).split("/") if p]
        node: Any = doc
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(index, copy.deepcopy(op["value"]))
            else:
                node[index] = copy.deepcopy(op["value"])
        else:
            node[last] = copy.deepcopy(op["value"])
    return doc


def kustomized_webhooks(webhook_dir: Path) -> list[dict[str, Any]]:
    """The webhook configurations of ``manifests.yaml`` with the JSON patches its
    kustomization.yaml lists (by target kind and name) applied."""
    docs = load_yaml([webhook_dir / "manifests.yaml"])
    kustomization = webhook_dir / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text()) if kustomization.is_file() else {}
    for patch in (spec or {}).get("patches") or []:
        target = patch.get("target") or {}
        ops = yaml.safe_load((webhook_dir / patch["path"]).read_text()) or []
        docs = [
            json_patched(d, ops)
            if d.get("kind") == target.get("kind")
            and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
            else d
            for d in docs
        ]
    return docs


def jobset(cp: ControlPlane, workdir: Path, share: Path) -> WebhookController:
    """JobSet's controller manager with its CRD and the webhooks it serves (JobSet defaulting
    and validation; the pod webhooks, limited by their upstream objectSelector to JobSet pods,
    that implement exclusive placement: followers wait for the leader pod's node pool).

    The serving certificate comes from the test CA through ``webhook.certDir``, so JobSet's
    internal cert management is off (it would otherwise issue one for its in-cluster Service
    only); its metrics server is off (it needs in-cluster delegated authentication)."""
    crds = [
        d
        for d in load_yaml(sorted((share / "crd").glob("*.yaml")))
        if d.get("kind") == "CustomResourceDefinition"
    ]
    hooks = kustomized_webhooks(share / "webhook")
    namespace, service = "jobset-system", "jobset-webhook-service"

    def argv(ctl: WebhookController) -> list[str]:
        config = {
            "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
            "kind": "Configuration",
            "health": {"healthProbeBindAddress": f"127.0.0.1:{ctl.health_port}"},
            "metrics": {"bindAddress": "0"},
            "webhook": {"port": ctl.port, "host": "127.0.0.1", "certDir": str(ctl.cert_dir)},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
        }
        path = ctl.workdir / "jobset-config.yaml"
        path.write_text(yaml.safe_dump(config))
        return [str(cp.bin / "jobset"), f"--config={path}", "--zap-log-level=info"]

    return WebhookController(
        name="jobset",
        cp=cp,
        workdir=workdir,
        argv=argv,
        crds=crds,
        webhooks=[h for h in hooks if h.get("webhooks")],
        certs=issue("jobset-ca", [f"{service}.{namespace}.svc"]),
        namespace=namespace,
        conversion=conversion_crds(share / "crd" / "kustomization.yaml"),
    )
