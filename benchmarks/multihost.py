"""Multi-host coordination: candidates/hour of 1 vs 2 trainer processes on one store, and
what coordinating through the store costs per generation.

A fresh store (a local folder, or a bucket on a fake-gcs-server this script starts with
``--backend gcs``) gets a tiny root bootstrapped once; then the same task is introduced with
the same seed (a) by one ``mutask introduce`` process, (b) by ``--hosts`` processes told their
place as the JobSet's pods are (``MUTASK_HOST_INDEX``, ``MUTASK_HOSTS``, ``MUTASK_ATTEMPT``).
Every process is one host with one core: one torch thread and ``MUTASK_TRAINER_CPUS=1`` (one
candidate at a time), so (b) has ``--hosts`` times the hardware of (a).

Reported per run: wall seconds from start until every process exited (startup, data,
training, publishing and verification included), candidates/hour = G*K/wall*3600, and that
both published the same result (bit-identical parameters). Per generation and host, measured
inside the hosts' processes (the exchange's methods wrapped, nothing changed in the trainer):
the store round trips the exchange makes (record and blob writes, lists, reads of records and
of the other hosts' components), the seconds spent in them (I/O, (de)serialising, loading
components), and the seconds spent waiting for the other hosts (load imbalance, not cost).
The machine's load average is printed before and after: on a shared machine the processes
compete with other work for the cores. The last line is the ratio of candidates/hour,
``--hosts`` processes over one (target >= 1.8 for 2).

    python benchmarks/multihost.py                    # local folder, 2 hosts
    python benchmarks/multihost.py --backend gcs      # fake-gcs-server bucket
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


# -- inside a host process: count the exchange's store traffic, then run `mutask` ------------
def run_as_host(stats_path: str, argv: list[str]) -> int:
    """Run ``mutask <argv>`` with the exchange's store round trips, time and waits counted;
    the counts go to ``stats_path`` when the run ends."""
    started = time.perf_counter()
    from mutask.trainer.cli import main
    from mutask.trainer.iteration import exchange as ex
    from mutask.trainer.iteration.generation import GenerationTraining
    from mutask.trainer.store.gcs import GcsObjectStore
    from mutask.trainer.store.objects import LocalObjectStore

    calls: Counter[str] = Counter()
    seconds = {"exchange": 0.0, "waiting": 0.0, "generations": 0.0, "process": 0.0, "cpu": 0.0}
    inside = [0]

    def counted(cls: type, name: str) -> None:
        inner = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if inside[0]:
                calls[name] += 1
            return inner(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    for cls in (LocalObjectStore, GcsObjectStore):
        for name in ("read", "write", "list", "stat", "delete"):
            counted(cls, name)

    def timed(name: str) -> None:
        inner = getattr(ex.Exchange, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            inside[0] += 1
            t0 = time.perf_counter()
            try:
                return inner(self, *args, **kwargs)
            finally:
                inside[0] -= 1
                if not inside[0]:
                    seconds["exchange"] += time.perf_counter() - t0

        setattr(ex.Exchange, name, wrapper)

    for name in ("stored", "put", "gather", "merge", "done", "clear_other_runs"):
        timed(name)

    train = GenerationTraining.train

    def train_timed(self: Any, offspring: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return train(self, offspring)
        finally:
            seconds["generations"] += time.perf_counter() - t0

    GenerationTraining.train = train_timed  # type: ignore[method-assign]

    def sleep(s: float) -> None:  # the exchange's polls: waiting for the other hosts
        seconds["waiting"] += s
        time.sleep(s)

    setattr(ex, "time", types.SimpleNamespace(sleep=sleep))  # noqa: B010 (only sleep is used)
    try:
        return main(argv)
    finally:
        seconds["process"] = time.perf_counter() - started
        seconds["cpu"] = time.process_time()
        Path(stats_path).write_text(json.dumps({"calls": dict(calls), **seconds}))


# -- the benchmark --------------------------------------------------------------------------
def env(extra: dict[str, str]) -> dict[str, str]:
    """One core per host: one torch thread, one candidate at a time."""
    out = dict(os.environ)
    out.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MUTASK_TRAINER_CPUS="1")
    out.update(PYTHONUNBUFFERED="1", **extra)
    return out


def introduce(store: str, args: argparse.Namespace) -> list[str]:
    return [
        "introduce",
        "--store",
        store,
        "--task",
        "rot90",
        "--transform",
        "rot90",
        "--seed",
        "0",
        "--generations",
        str(args.generations),
        "--candidates",
        str(args.candidates),
        "--rounds",
        "1",
        "--steps",
        str(args.steps),
        "--preset",
        "mu-tiny",
        "--image-size",
        "16",
        "--device",
        "cpu",
        "--quiet",
    ]


def run_hosts(store: str, hosts: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Start ``hosts`` processes (one: a plain single-host run); wall seconds and stats."""
    procs, stats = [], []
    t0 = time.perf_counter()
    for h in range(hosts):
        place = {}
        if hosts > 1:
            place = {"MUTASK_HOST_INDEX": str(h), "MUTASK_HOSTS": str(hosts)}
            place["MUTASK_ATTEMPT"] = f"bench-{hosts}"
        path = work / f"stats-{hosts}-{h}.json"
        stats.append(path)
        out = (work / f"host-{hosts}-{h}.log").open("wb")
        cmd = [sys.executable, str(HERE), "--as-host", str(path), "--", *introduce(store, args)]
        procs.append(subprocess.Popen(cmd, cwd=work, env=env(place), stdout=out, stderr=out))
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - t0
    if any(codes):
        logs = [(work / f"host-{hosts}-{h}.log").read_text()[-2000:] for h in range(hosts)]
        raise SystemExit(f"{hosts} host(s) exited {codes}:\n" + "\n".join(logs))
    return {"wall": wall, "stats": [json.loads(p.read_text()) for p in stats]}


def published(store: str) -> dict[str, Any]:
    from mutask.trainer.store.system_store import SystemStore

    found = SystemStore.open(store).read_manifest("rot90")
    assert found is not None
    m = found[0]
    return {
        "path": m["path"]["id"],
        "hashes": {c: e["param_hash"] for c, e in sorted(m["components"].items())},
        "score": m["score"],
    }


def seed_store(root: Path, uri: str) -> str:
    from mutask.trainer.store.gcs import GcsObjectStore
    from mutask.trainer.store.objects import LocalObjectStore, ObjectStore

    src = LocalObjectStore(root)
    dst: ObjectStore = (
        GcsObjectStore.from_uri(uri) if uri.startswith("gs://") else LocalObjectStore(uri)
    )
    for info in src.list():
        dst.write(info.key, src.read(info.key)[0])
    return uri


def bootstrap(root: Path) -> None:
    from mutask.trainer.config import BudgetConfig, IntroduceConfig, ModelConfig
    from mutask.trainer.iteration.bootstrap import bootstrap_root
    from mutask.trainer.iteration.engine import Engine
    from mutask.trainer.runtime.device import select_device
    from mutask.trainer.store.system_store import SystemStore

    cfg = IntroduceConfig(
        task="digits",
        store=str(root),
        device="cpu",
        model=ModelConfig(preset="mu-tiny", image_size=16),
        budget=BudgetConfig(generations=1, candidates=2, validation_rounds=1, steps_per_round=20),
    ).validate()
    engine = Engine(
        SystemStore.open(str(root)), select_device("cpu"), progress_bars=False, log=lambda _: None
    )
    bootstrap_root(engine, cfg)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def phases(stats: list[dict[str, Any]]) -> str:
    """Where each process's time went: generations (training + exchange), the rest."""
    return "; ".join(
        f"host {h}: {s['process']:.1f} s process ({s['cpu']:.1f} s CPU), "
        f"{s['generations']:.1f} s in generations ({s['generations'] - s['exchange']:.1f} s "
        f"training)"
        for h, s in enumerate(stats)
    )


def per_generation(stats: list[dict[str, Any]], generations: int) -> str:
    lines = []
    for h, s in enumerate(stats):
        calls = s["calls"]
        trips = sum(calls.values()) / generations
        detail = ", ".join(f"{k} {v / generations:.1f}" for k, v in sorted(calls.items()))
        busy = s["exchange"] - s["waiting"]
        each = busy / max(1, sum(calls.values())) * 1000
        lines.append(
            f"  host {h}: {trips:.1f} store round trips/generation ({detail}); "
            f"{busy / generations:.3f} s in them ({each:.1f} ms each), "
            f"{s['waiting'] / generations:.3f} s waiting for the other hosts"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--as-host":
        raise SystemExit(run_as_host(sys.argv[2], sys.argv[4:]))
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--backend", choices=["local", "gcs"], default="local")
    parser.add_argument("--hosts", type=int, default=2, help="processes of the multi-host run")
    parser.add_argument("--generations", type=int, default=2)
    parser.add_argument("--candidates", type=int, default=8, help="per generation")
    parser.add_argument("--steps", type=int, default=60, help="training steps per candidate")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mutask-multihost-") as tmp:
        work = Path(tmp)
        root = work / "root"
        bootstrap(root)
        new_uri: Callable[[str], str]
        server = None
        if args.backend == "gcs":
            sys.path.insert(0, str(HERE.parents[1] / "tests" / "store"))
            from gcs_emulator import FakeGcs

            server = FakeGcs().__enter__()
            os.environ.update(server.env())

            def new_uri(name: str) -> str:
                server.create_bucket(f"bench-{name}")
                return f"gs://bench-{name}/system"
        else:

            def new_uri(name: str) -> str:
                return str(work / name)

        try:
            print(f"load average before: {load()} (cores: {os.cpu_count()})")
            total = args.generations * args.candidates
            print(
                f"{args.backend} store; {args.generations} generations x {args.candidates} "
                f"candidates x {args.steps} steps (mu-tiny, 16 px); one core per host"
            )
            results = {}
            for hosts in (1, args.hosts):
                store = seed_store(root, new_uri(f"h{hosts}"))
                out = run_hosts(store, hosts, args, work)
                out["published"] = published(store)
                results[hosts] = out
                rate = total / out["wall"] * 3600
                print(f"{hosts} host(s): {out['wall']:.1f} s wall, {rate:,.0f} candidates/hour")
                print(f"  {phases(out['stats'])}")
                if hosts > 1:
                    print(f"  coordination per generation, {hosts} hosts:")
                    print(per_generation(out["stats"], args.generations))
            same = results[1]["published"] == results[args.hosts]["published"]
            print(f"same published result (bit-identical parameters): {same}")
            print(f"load average after: {load()}")
            busiest = {h: max(s["cpu"] for s in r["stats"]) for h, r in results.items()}
            print(
                f"if every host had a core to itself (the busiest host's CPU seconds): "
                f"1 host {busiest[1]:.1f} s, {args.hosts} hosts {busiest[args.hosts]:.1f} s, "
                f"{busiest[1] / busiest[args.hosts]:.2f}x (an estimate, not the measured ratio)"
            )
            ratio = results[1]["wall"] / results[args.hosts]["wall"]
            print(f"candidates/hour ratio ({args.hosts} hosts / 1): {ratio:.2f}x")
        finally:
            if server is not None:
                server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
