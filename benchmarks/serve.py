"""Serving N tasks from one `mutask serve` vs N exported models in one process each.

Builds a system with the real trainer (a random-init ViT root bootstrapped as "pretrained
weights", then N tasks introduced on built-in data with a small budget), exports each task
(`mutask export`), and measures on 127.0.0.1, load from a separate client process (the stock
OIP client, tritonclient's aio HTTP client), servers pinned to the same cores:

1. memory: RSS of one `mutask serve --store` (all tasks) vs the sum over N `mutask serve
   --model TASK.safetensors` processes (one task each), after warm-up; also net of the
   runtime (an empty server's RSS) and the parameter bytes alone;
2. throughput and p50/p99 latency under the same open-loop offered load (Poisson arrivals,
   tasks drawn uniformly, one image per request) at two rates derived from the shared
   server's measured capacity;
3. shared-prefix batching across tasks: the shared server with and without
   `--no-share-prefixes` under load, and one window's compute time in-process.

The last line is the memory ratio (target <= 0.4 at 6 tasks).

    python benchmarks/serve.py [--preset s16] [--image-size 32] [--tasks 6] [--seconds 8]
    python benchmarks/serve.py --quick        # tiny smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

MUTASK = str(Path(sys.executable).parent / "mutask")
TASKS = [
    ("digits", {"source": "digits"}),
    ("mnist-rot90", {"source": "mnist", "transform": "rot90"}),
    ("digits-parity", {"source": "digits", "label_map": {str(i): i % 2 for i in range(10)}}),
    ("mnist-0to4-flip", {"source": "mnist", "labels": [0, 1, 2, 3, 4], "transform": "flip_lr"}),
    ("digits-transpose", {"source": "digits", "transform": "transpose"}),
    ("mnist-invert", {"source": "mnist", "transform": "invert"}),
    ("digits-rot180", {"source": "digits", "transform": "rot180"}),
    ("mnist-5to9", {"source": "mnist", "labels": [5, 6, 7, 8, 9]}),
]


# --------------------------------------------------------------------------- the system


def build_store(store: Path, preset: str, image_size: int, n: int, steps: int) -> list[str]:
    """A root from random "pretrained" weights, then ``n`` tasks by the real trainer."""
    import torch

    from mutask.trainer.config import (
        BudgetConfig,
        DatasetConfig,
        IntroduceConfig,
        ModelConfig,
        SearchConfig,
    )
    from mutask.trainer.evolution import architecture
    from mutask.trainer.iteration.bootstrap import bootstrap_root
    from mutask.trainer.iteration.engine import Engine
    from mutask.trainer.models import PathModel, build_component, get_shape, save_exported
    from mutask.trainer.runtime.device import select_device
    from mutask.trainer.store.system_store import SystemStore

    shape = get_shape(preset, image_size)
    gen = torch.Generator().manual_seed(0)
    root = PathModel(
        [
            (name, build_component(name, shape, num_classes=10, generator=gen))
            for name in architecture(shape.depth, set())
        ]
    )
    weights = store.parent / "root.safetensors"
    save_exported(root, weights, {})
    budget = BudgetConfig(
        generations=1,
        candidates=2,
        validation_rounds=1,
        steps_per_round=steps,
        batch_size=16,
        max_validation_examples=64,
    )
    base = IntroduceConfig(
        task="root",
        dataset=DatasetConfig(source="digits"),
        store=str(store),
        budget=budget,
        search=SearchConfig(size_scale=0.9),
        model=ModelConfig(preset=preset, image_size=image_size, weights=str(weights)),
        device="cpu",
    )
    engine = Engine(SystemStore.open(str(store)), select_device("cpu"), progress_bars=False)
    bootstrap_root(engine, base)
    names = []
    for name, dataset in TASKS[:n]:
        started = time.perf_counter()
        cfg = replace(base, task=name, dataset=DatasetConfig(**dataset))  # type: ignore[arg-type]
        out = engine.introduce(cfg, verify=False)
        print(
            f"  introduced {name}: {out.manifest['params']['added']:,} params added, "
            f"{out.manifest['params']['shared']:,} shared ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        names.append(name)
    return names


# --------------------------------------------------------------------------- processes


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


RUNNING: list[Any] = []  # every server started, stopped at exit whatever happens


def serve(args: list[str], port: int, cores: set[int], threads: int, log: Path) -> Any:
    cmd = [MUTASK, "serve", *args, "--port", str(port), "--threads", str(threads)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
            cwd=log.parent,
        )
    RUNNING.append(proc)
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)


def stop(procs: list[Any]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait()


def run_client(
    targets: dict[str, str], rate: float, seconds: float, image_size: int, cores: set[int]
) -> dict[str, Any]:
    """Open-loop load from a separate process (this script's `client` mode)."""
    spec = json.dumps({"targets": targets, "rate": rate, "seconds": seconds, "size": image_size})
    done = subprocess.run(
        [sys.executable, __file__, "client", spec],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def client_main(spec: dict[str, Any]) -> dict[str, Any]:
    import tritonclient.http.aio as aioclient
    from tritonclient.http import InferInput

    targets: dict[str, str] = spec["targets"]
    size, rate, seconds = spec["size"], spec["rate"], spec["seconds"]
    clients = {url: aioclient.InferenceServerClient(url) for url in set(targets.values())}
    rng = random.Random(0)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    tasks = sorted(targets)
    latencies: list[float] = []
    failures = 0

    async def one(task: str) -> None:
        nonlocal failures
        inp = InferInput("images", [1, 3, size, size], "FP32")
        inp.set_data_from_numpy(image)
        t0 = time.perf_counter()
        try:
            await clients[targets[task]].infer(task, [inp])
            latencies.append(time.perf_counter() - t0)
        except Exception:
            failures += 1

    for task in tasks:  # warm-up: every path once
        await one(task)
    latencies.clear()
    pending = []
    start = time.perf_counter()
    t = 0.0
    while t < seconds:
        t += rng.expovariate(rate)
        delay = start + t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(rng.choice(tasks))))
    sent = len(pending)
    _, late = await asyncio.wait(pending, timeout=10)
    for p in late:
        p.cancel()
    elapsed = time.perf_counter() - start
    for c in clients.values():
        await c.close()
    lat = sorted(latencies)
    return {
        "sent": sent,
        "done": len(lat),
        "failed": failures + len(late),
        "throughput": len(lat) / elapsed,
        "p50_ms": 1e3 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


# --------------------------------------------------------------------------- measurements


def window_compute(store: Path, tasks: list[str], rows: int, repeats: int) -> tuple[float, float]:
    """Median seconds of one window (every task, ``rows`` images each): shared vs not."""
    import torch

    from mutask.trainer.serving.catalog import StoreCatalog
    from mutask.trainer.serving.shared_prefix import Group, forward_window
    from mutask.trainer.store.system_store import SystemStore

    torch.set_num_threads(1)
    catalog = StoreCatalog(SystemStore.open(str(store)), torch.device("cpu")).refresh()
    assert catalog is not None
    size = catalog.tasks[tasks[0]].image_size
    gen = torch.Generator().manual_seed(0)
    groups = [
        Group(catalog.tasks[t], torch.rand(rows, 3, size, size, generator=gen)) for t in tasks
    ]
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for share in (True, False):
            t0 = time.perf_counter()
            forward_window(groups, torch.device("cpu"), share=share)
            times[share].append(time.perf_counter() - t0)
    return statistics.median(times[True][1:]), statistics.median(times[False][1:])


def parse_cores(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        print(json.dumps(asyncio.run(client_main(json.loads(sys.argv[2])))))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="s16")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--tasks", type=int, default=6, choices=range(1, len(TASKS) + 1))
    p.add_argument("--steps", type=int, default=3, help="training steps per candidate")
    p.add_argument("--seconds", type=float, default=8.0, help="each load run")
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    p.add_argument("--server-cores", default=",".join(map(str, cpus[:half])))
    p.add_argument("--client-cores", default=",".join(map(str, cpus[half:] or cpus)))
    p.add_argument("--quick", action="store_true", help="mu-tiny, 2 tasks, 2 s runs (smoke)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (store, exports)")
    args = p.parse_args()
    if args.quick:
        args.preset, args.image_size, args.tasks, args.seconds = "mu-tiny", 16, 2, 2.0
    work = Path(tempfile.mkdtemp(prefix="mutask-serve-bench-"))
    try:
        measure(args, work)
    finally:
        stop(RUNNING)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> None:
    """Build the system, run every setup, print the figures (last line: the ratio)."""
    server_cores, client_cores = parse_cores(args.server_cores), parse_cores(args.client_cores)
    threads = len(server_cores)
    store, log = work / "store", work / "servers.log"
    print(f"building the system ({args.preset}, {args.image_size} px, {args.tasks} tasks)")
    tasks = build_store(store, args.preset, args.image_size, args.tasks, args.steps)
    from mutask.trainer.cli import main as cli

    files = {}
    for task in tasks:
        files[task] = work / f"{task}.safetensors"
        assert cli(["export", task, "--store", str(store), "--out", str(files[task])]) == 0
    print(
        f"servers on cores {sorted(server_cores)} ({threads} thread(s) each), client on "
        f"{sorted(client_cores)}"
    )

    def load(targets: dict[str, str], rate: float) -> dict[str, Any]:
        return run_client(targets, rate, args.seconds, args.image_size, client_cores)

    port = 18600
    empty = work / "empty"
    empty.mkdir()
    base = serve(["--store", str(empty)], port, server_cores, threads, log)
    runtime = rss_mb(base.pid)
    stop([base])
    shared = serve(["--store", str(store)], port, server_cores, threads, log)
    one = {t: f"127.0.0.1:{port}" for t in tasks}
    run_client(one, 2.0 * len(tasks), 1.0, args.image_size, client_cores)  # warm-up
    shared_rss = rss_mb(shared.pid)
    capacity = load(one, 5000.0)["throughput"]  # saturating: the shared server's capacity
    rates = (0.5 * capacity, 0.9 * capacity)
    results: dict[str, list[dict[str, Any]]] = {"shared": [load(one, r) for r in rates]}
    stop([shared])
    plain = serve(["--store", str(store), "--no-share-prefixes"], port, server_cores, threads, log)
    results["no prefix sharing"] = [load(one, r) for r in rates]
    stop([plain])
    alone = [
        serve(["--model", str(files[t])], port + 1 + i, server_cores, threads, log)
        for i, t in enumerate(tasks)
    ]
    each = {t: f"127.0.0.1:{port + 1 + i}" for i, t in enumerate(tasks)}
    for t in tasks:  # warm every process once before measuring memory
        run_client({t: each[t]}, 1.0, 0.5, args.image_size, client_cores)
    alone_rss = [rss_mb(p.pid) for p in alone]
    results[f"{len(tasks)} processes"] = [load(each, r) for r in rates]
    stop(alone)

    import torch

    from mutask.trainer.serving.catalog import Catalog, ExportCatalog, StoreCatalog
    from mutask.trainer.store.system_store import SystemStore

    cat = StoreCatalog(SystemStore.open(str(store)), torch.device("cpu")).refresh()
    exp = ExportCatalog(list(files.values()), torch.device("cpu")).refresh()
    assert isinstance(cat, Catalog) and isinstance(exp, Catalog)
    shared_w, alone_w = window_compute(store, tasks, 4, 15)

    print(f"\nmemory, {len(tasks)} tasks (RSS after warm-up; empty server {runtime:.0f} MB):")
    total = sum(alone_rss)
    print(f"  one mutask serve (all tasks + root) {shared_rss:8.0f} MB")
    print(
        f"  {len(tasks)} x mutask serve --model          {total:8.0f} MB  "
        f"({', '.join(f'{r:.0f}' for r in alone_rss)})"
    )
    net_ratio = (shared_rss - runtime) / max(1e-9, total - len(tasks) * runtime)
    print(
        f"  net of the runtime: {shared_rss - runtime:.0f} MB vs {total - len(tasks) * runtime:.0f}"
        f" MB -> {net_ratio:.3f}x"
    )
    print(
        f"  parameters: {cat.parameters:,} shared vs {exp.parameters:,} in the exports -> "
        f"{cat.parameters / exp.parameters:.3f}x"
    )
    print(
        f"\nload: open loop, 1 image/request, tasks uniform, {args.seconds:.0f} s per run; "
        f"shared capacity {capacity:.0f} req/s"
    )
    print(
        f"  {'setup':22s} {'offered':>8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>9s} "
        f"{'failed':>7s}"
    )
    for name, runs in results.items():
        for rate, r in zip(rates, runs, strict=True):
            print(
                f"  {name:22s} {rate:8.0f} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
                f"{r['p99_ms']:9.1f} {r['failed']:7d}"
            )
    print(
        f"\none window ({len(tasks)} tasks x 4 images), in-process: shared prefixes "
        f"{shared_w * 1e3:.1f} ms vs each task alone {alone_w * 1e3:.1f} ms -> "
        f"{alone_w / shared_w:.2f}x"
    )
    print(
        f"memory ratio (one server / {len(tasks)} processes, target <= 0.4): "
        f"{shared_rss / total:.3f}"
    )


if __name__ == "__main__":
    main()
