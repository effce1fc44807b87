"""Operator scale benchmark: 1,000 TaskIntroductions against the in-memory API stand-in.

Starts the kmock-based Kubernetes API (tests/operator/op_fakeapi.py) on 127.0.0.1, runs the
real operator (``mutask.operator.main.run``) as a separate process, creates one
MultitaskSystem and N TaskIntroductions at a steady rate, and measures

* reconcile latency: TaskIntroduction created -> first operator status write (Job created,
  phase Accepted), p50/p99, seen by the API server;
* the operator's own reconcile duration (its Prometheus histogram);
* operator RSS (current and peak, from /proc).

Targets: p99 < 1 s, RSS < 150 MB. The last line prints the ratios to the targets.

    .venv/bin/python benchmarks/operator_scale.py [--count 1000] [--rate 50]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "operator"))

from op_fakeapi import FakeKubernetes, serve_fake_api  # noqa: E402

P99_TARGET_S = 1.0
RSS_TARGET_MB = 150.0
TI_PATH = "/apis/mutask.dev/v1alpha1/namespaces/bench/taskintroductions"


class _Timeline:
    def __init__(self) -> None:
        self.created: dict[str, float] = {}
        self.first_status: dict[str, float] = {}


Timeline = _Timeline()


_orig_prepare = FakeKubernetes._prepare_update


def _prepare(self: FakeKubernetes, request: Any, plural: str | None) -> Any:
    if plural == "taskintroductions" and request.subresource == "status" and request.name:
        Timeline.first_status.setdefault(request.name, time.monotonic())
    return _orig_prepare(self, request, plural)


FakeKubernetes._prepare_update = _prepare  # type: ignore[method-assign]


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def histogram_quantiles(text: str, kind: str) -> tuple[float, float, int]:
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        prefix = "mutask_operator_reconcile_duration_seconds_bucket{"
        if line.startswith(prefix) and f'kind="{kind}"' in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def q(p: float) -> float:
        for le, count in buckets:
            if count >= p * total:
                return le
        return float("nan")

    return q(0.5), q(0.99), int(total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="introductions created per second")
    parser.add_argument("--metrics-port", type=int, default=18080)
    args = parser.parse_args()

    from kubernetes import client

    from mutask.operator.kube import Kube, load_client_config, mts_path

    workdir = Path(tempfile.mkdtemp(prefix="mutask-bench-"))
    store = workdir / "store"
    store.mkdir()
    (store / "root.json").write_text("{}")
    with serve_fake_api() as api:
        kubeconfig = api.kubeconfig(workdir / "kubeconfig")
        os.environ["KUBECONFIG"] = str(kubeconfig)
        kube = Kube(client.ApiClient(load_client_config()))
        kube.create(
            mts_path("bench"),
            {
                "apiVersion": "mutask.dev/v1alpha1",
                "kind": "MultitaskSystem",
                "metadata": {"name": "bench", "namespace": "bench"},
                "spec": {
                    "storage": {"uri": f"file://{store}"},
                    "maxConcurrentIntroductions": 10000,
                },
            },
        )
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"}
        code = (
            "import sys; from mutask.operator.main import run; "
            f"sys.exit(run(['--all-namespaces', '--standalone', '--metrics-port', "
            f"'{args.metrics_port}', '--liveness-port', '0']))"
        )
        log = open(workdir / "operator.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-c", code], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                obj = api.fake.get("mutask.dev/v1alpha1/multitasksystems", "bench", "bench")
                if obj and obj.get("status", {}).get("conditions"):
                    break
                time.sleep(0.1)
            else:
                raise SystemExit("operator did not start; see " + str(workdir / "operator.log"))
            idle_rss, _ = rss_mb(proc.pid)
            start = time.monotonic()
            for i in range(args.count):
                name = f"ti-{i:05d}"
                target = start + i / args.rate
                time.sleep(max(0.0, target - time.monotonic()))
                Timeline.created[name] = time.monotonic()
                kube.create(
                    TI_PATH,
                    {
                        "apiVersion": "mutask.dev/v1alpha1",
                        "kind": "TaskIntroduction",
                        "metadata": {"name": name, "namespace": "bench"},
                        "spec": {
                            "systemRef": {"name": "bench"},
                            "task": f"task-{i:05d}",
                            "dataset": {"uri": "digits"},
                        },
                    },
                )
            deadline = time.monotonic() + 120
            while len(Timeline.first_status) < args.count and time.monotonic() < deadline:
                time.sleep(0.2)
            converged = time.monotonic() - start
            time.sleep(2)
            rss, peak = rss_mb(proc.pid)
            metrics = (
                urllib.request.urlopen(f"http://127.0.0.1:{args.metrics_port}/metrics", timeout=5)
                .read()
                .decode()
            )
        finally:
            proc.terminate()
            proc.wait(30)
        jobs = len(api.fake.all("batch/v1/jobs"))
    latencies = [
        Timeline.first_status[n] - t
        for n, t in Timeline.created.items()
        if n in Timeline.first_status
    ]
    missing = args.count - len(latencies)
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    h50, h99, reconciles = histogram_quantiles(metrics, "TaskIntroduction")
    print(f"introductions: {args.count} at {args.rate:g}/s; Jobs: {jobs}; no status: {missing}")
    print(f"all converged after {converged:.1f} s")
    print(
        f"create -> Accepted latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms"
    )
    print(
        f"operator reconcile duration ({reconciles} reconciles, histogram buckets): "
        f"p50 <= {h50:g} s, p99 <= {h99:g} s"
    )
    print(f"operator RSS: idle {idle_rss:.0f} MB, after {rss:.0f} MB, peak {peak:.0f} MB")
    print(
        f"RESULT p99 {p99:.3f} s / target {P99_TARGET_S:g} s = {p99 / P99_TARGET_S:.2f}x; "
        f"peak RSS {peak:.0f} MB / target {RSS_TARGET_MB:g} MB = {peak / RSS_TARGET_MB:.2f}x"
    )
    return 0 if missing == 0 and p99 < P99_TARGET_S and peak < RSS_TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
