"""Warm start of the test control plane (binaries already built by .ci/controlplane.sh).

Measures, ``--repeats`` times each, alternating:

* baseline: the bare control plane — ``kwokctl create cluster`` (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kwok) until the apiserver serves and the default
  ServiceAccount exists;
* session setup: what tests/cluster pays once per pytest session — the same, plus the simulated
  GKE node pools and ``helm install charts/mutask --wait``;
* stop: ``kwokctl delete cluster`` until its processes are gone.

Target: session setup ≤ 30 s (a warm start "in seconds"). The last line prints the medians and
the ratio of session setup to the baseline.

    .venv/bin/python benchmarks/controlplane.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from controlplane import ControlPlane  # noqa: E402
from gke_pools import POOLS  # noqa: E402
from helm_release import CHART, Helm  # noqa: E402

TARGET_SECONDS = 30.0


def once(full: bool) -> tuple[float, float]:
    """(start seconds, stop seconds) of one control plane."""
    with tempfile.TemporaryDirectory(prefix="mutask-cp-bench-") as tmp:
        cp = ControlPlane(Path(tmp))
        began = time.perf_counter()
        try:
            cp.start()
            if full:
                cp.apply(node for pool in POOLS for node in pool.nodes())
                Helm(cp)(
                    "install",
                    "mutask",
                    str(CHART),
                    "-n",
                    "mutask-system",
                    "--create-namespace",
                    "--wait",
                    "--timeout",
                    "3m",
                )
            started = time.perf_counter() - began
        finally:
            stopping = time.perf_counter()
            cp.stop()
        return started, time.perf_counter() - stopping


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind (default: 3)")
    args = parser.parse_args()
    bare: list[float] = []
    full: list[float] = []
    stops: list[float] = []
    for i in range(args.repeats):
        for is_full, out in ((False, bare), (True, full)):
            start, stop = once(is_full)
            out.append(start)
            stops.append(stop)
            kind = "session setup" if is_full else "bare control plane"
            print(f"run {i + 1}: {kind}: start {start:.1f} s, stop {stop:.1f} s", flush=True)
    b, f, s = statistics.median(bare), statistics.median(full), statistics.median(stops)
    print(
        f"median: bare {b:.1f} s, session setup {f:.1f} s (target ≤ {TARGET_SECONDS:.0f} s), "
        f"stop {s:.1f} s"
    )
    print(f"session setup vs bare control plane: {f:.1f} s / {b:.1f} s = ratio {f / b:.2f}")
    return 0 if f <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
