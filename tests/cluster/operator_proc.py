"""The mutask operator as a local process, exactly as the Helm chart's Deployment runs it.

The command, args and environment are read from the Deployment that ``helm install`` created
(ports are moved to free local ones); the process authenticates with a TokenRequest token of
the chart's operator ServiceAccount, so the chart's RBAC is what is exercised, not an admin.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controlplane import ClusterError, ControlPlane, Identity, free_port, wait_for


def deployment_command(deployment: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of the operator container (fieldRef env resolved as a kubelet would)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    meta = deployment["metadata"]
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = f"{meta['name']}-local"
        elif var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[var["name"]] = meta["namespace"]
        else:
            raise ClusterError(f"operator env {var['name']}: unsupported valueFrom")
    return list(container["command"]) + list(container.get("args") or []), env


class OperatorProcess:
    """``start()`` runs it and waits for /healthz; ``stop()`` sends SIGTERM (idempotent)."""

    def __init__(
        self,
        cp: ControlPlane,
        identity: Identity,
        deployment: Mapping[str, Any],
        workdir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.cp, self.identity, self.workdir = cp, identity, workdir
        argv, base_env = deployment_command(deployment)
        self.liveness = free_port()
        ports = {"--metrics-port": free_port(), "--liveness-port": self.liveness}
        for i, arg in enumerate(argv):
            key = arg.split("=", 1)[0]
            if key in ports:
                argv[i] = f"{key}={ports[key]}"
        exe = Path(sys.executable).parent / argv[0]
        self.argv = [str(exe) if exe.exists() else argv[0], *argv[1:]]
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(workdir),
            **base_env,
            "KUBECONFIG": str(identity.kubeconfig),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "operator.log"
        self.starts = 0

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise ClusterError(f"operator exited with {self.process.returncode}:\n{self.tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def start(self) -> OperatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts}: {' '.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for("the operator's /healthz", self._healthy, 60)
        except TimeoutError as err:
            self.stop()
            raise ClusterError(f"{err}\n{self.tail()}") from err
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
