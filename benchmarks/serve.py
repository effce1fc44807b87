"""Serving N tasks from one `mutask serve` vs N exported models in one process each.

Builds a system with the real trainer (a random-init ViT root bootstrapped as "pretrained
weights", then N tasks introduced on built-in data with a small budget), exports each task
(`mutask export`), and measures on 127.0.0.1, load from a separate client process
(benchmarks/serve_load.py: the stock OIP client, tritonclient's aio HTTP client), servers
pinned to the same cores:

1. memory: RSS of one `mutask serve --store` (all tasks) vs the sum over N `mutask serve
   --model TASK.safetensors` processes (one task each), after warm-up; also net of the
   runtime (an empty server's RSS) and the parameter bytes alone;
2. throughput and p50/p99 latency under the same open-loop offered load (Poisson arrivals,
   tasks drawn uniformly, one image per request) at 50% and 90% of the shared server's
   closed-loop capacity;
3. shared-prefix batching across tasks: the shared server with and without
   `--no-share-prefixes` under load, one window's compute time in-process, and how much of
   the work the paths' common prefixes can save at all (it depends on where evolution cloned).

The last line is the memory ratio (target <= 0.4 at 6 tasks).

    python benchmarks/serve.py [--preset s16] [--image-size 32] [--tasks 6] [--seconds 8]
    python benchmarks/serve.py --store mutask-demo/store --tasks 3   # an existing system
    python benchmarks/serve.py --quick        # tiny smoke run
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_client(targets: dict[str, str], size: int, cores: set[int], **load: float) -> Any:
    """Load from a separate process (serve_load.py): ``rate=`` open loop, ``concurrency=``
    closed loop, for ``seconds=``."""
    spec = json.dumps({"targets": targets, "size": size, **load})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("serve_load.py")), spec],
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores),
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- measurements


def window_compute(store: Path, tasks: list[str], rows: int, repeats: int) -> dict[str, float]:
    """One window (every task, ``rows`` images each), in-process: median seconds shared vs
    each task alone, and the share of the work (parameter-weighted component evaluations)
    that common prefixes run batched across tasks. Different images through a common prefix
    are still different rows: sharing saves no arithmetic, it runs it in larger batches."""
    import torch

    from mutask.trainer.serving.catalog import StoreCatalog
    from mutask.trainer.serving.shared_prefix import Group, WindowTrie, forward_window
    from mutask.trainer.store.system_store import SystemStore

    torch.set_num_threads(1)
    catalog = StoreCatalog(SystemStore.open(str(store)), torch.device("cpu")).refresh()
    assert catalog is not None
    served = sorted((catalog.tasks[t] for t in tasks), key=lambda t: t.component_ids)
    size = served[0].image_size
    gen = torch.Generator().manual_seed(0)
    groups = [Group(t, torch.rand(rows, 3, size, size, generator=gen)) for t in served]
    weight = {
        cid: sum(p.numel() for p in m.parameters())
        for t in served
        for cid, m in zip(t.component_ids, t.modules, strict=True)
    }
    alone = sum(rows * sum(weight[c] for c in t.component_ids) for t in served)
    trie = WindowTrie(
        [t.component_ids for t in served],
        [slice(i * rows, (i + 1) * rows) for i in range(len(served))],
    )
    batched = 0  # work on rows of several tasks at once: each shared node, on its span
    for node, (lo, hi) in trie.spans.items():
        if hi - lo > rows:
            above = [len(n) for n in trie.keep if len(n) < len(node) and node[: len(n)] == n]
            batched += (hi - lo) * sum(weight[c] for c in node[max(above, default=0) :])
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for share in (True, False):
            t0 = time.perf_counter()
            forward_window(groups, torch.device("cpu"), share=share)
            times[share].append(time.perf_counter() - t0)
    return {
        "shared_s": statistics.median(times[True][1:]),
        "alone_s": statistics.median(times[False][1:]),
        "batched": batched / alone,
        "common": statistics.mean(
            common_length(a.component_ids, b.component_ids)
            for i, a in enumerate(served)
            for b in served[i + 1 :]
        )
        if len(served) > 1
        else 0.0,
        "length": statistics.mean(len(t.component_ids) for t in served),
    }


def common_length(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def parse_cores(text: str) -> set[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--store", help="serve this store's tasks (e.g. the demo's) instead of building one"
    )
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
    from mutask.trainer.cli import main as cli
    from mutask.trainer.evolution import ROOT_TASK
    from mutask.trainer.store.system_store import SystemStore

    server_cores, client_cores = parse_cores(args.server_cores), parse_cores(args.client_cores)
    threads = len(server_cores)
    log = work / "servers.log"
    if args.store:
        store = Path(args.store).resolve()
        tasks = [t for t in SystemStore.open(str(store)).tasks() if t != ROOT_TASK][: args.tasks]
        print(f"serving {store}: {', '.join(tasks)}")
    else:
        store = work / "store"
        print(f"building the system ({args.preset}, {args.image_size} px, {args.tasks} tasks)")
        tasks = build_store(store, args.preset, args.image_size, args.tasks, args.steps)
    size = int(next(iter(SystemStore.open(str(store)).manifests().values()))["shape"]["image_size"])
    files = {t: work / f"{t.replace(':', '_')}.safetensors" for t in tasks}
    for task in tasks:
        assert cli(["export", task, "--store", str(store), "--out", str(files[task])]) == 0
    print(
        f"servers on cores {sorted(server_cores)} ({threads} thread(s) each), client on "
        f"{sorted(client_cores)}"
    )
    port, seconds = 18600, args.seconds

    def load(targets: dict[str, str], **how: float) -> dict[str, Any]:
        return run_client(targets, size, client_cores, **{"seconds": seconds, **how})

    def start(flags: list[str], at: int) -> Any:
        return serve(flags, at, server_cores, threads, log)

    empty = work / "empty"
    empty.mkdir()
    base = start(["--store", str(empty)], port)
    runtime = rss_mb(base.pid)
    stop([base])
    shared = start(["--store", str(store)], port)
    one = {t: f"127.0.0.1:{port}" for t in tasks}
    load(one, rate=2.0 * len(tasks), seconds=1.0)  # warm-up, then memory at rest
    shared_rss = rss_mb(shared.pid)
    capacity = load(one, concurrency=4 * len(tasks))["throughput"]
    rates = (0.5 * capacity, 0.9 * capacity)
    results: dict[str, list[dict[str, Any]]] = {"shared": [load(one, rate=r) for r in rates]}
    stop([shared])
    plain = start(["--store", str(store), "--no-share-prefixes"], port)
    results["no prefix sharing"] = [load(one, rate=r) for r in rates]
    stop([plain])
    alone = [start(["--model", str(files[t])], port + 1 + i) for i, t in enumerate(tasks)]
    each = {t: f"127.0.0.1:{port + 1 + i}" for i, t in enumerate(tasks)}
    for t in tasks:
        load({t: each[t]}, rate=2.0, seconds=1.0)
    alone_rss = [rss_mb(p.pid) for p in alone]
    results[f"{len(tasks)} processes"] = [load(each, rate=r) for r in rates]
    stop(alone)

    import torch

    from mutask.trainer.serving.catalog import ExportCatalog, StoreCatalog

    cat = StoreCatalog(SystemStore.open(str(store)), torch.device("cpu")).refresh()
    exp = ExportCatalog(list(files.values()), torch.device("cpu")).refresh()
    assert cat is not None and exp is not None
    win = window_compute(store, tasks, 4, 15)
    total = sum(alone_rss)
    print(f"\nmemory, {len(tasks)} tasks (RSS after warm-up; empty server {runtime:.0f} MB):")
    print(f"  one mutask serve (all tasks + root) {shared_rss:8.0f} MB")
    print(
        f"  {len(tasks)} x mutask serve --model {total:14.0f} MB  "
        f"({', '.join(f'{r:.0f}' for r in alone_rss)})"
    )
    net = (shared_rss - runtime) / max(1e-9, total - len(tasks) * runtime)
    print(
        f"  net of the runtime: {shared_rss - runtime:.0f} MB vs "
        f"{total - len(tasks) * runtime:.0f} MB -> {net:.3f}x"
    )
    print(
        f"  parameters: {cat.parameters:,} in the server vs {exp.parameters:,} in the "
        f"exports -> {cat.parameters / exp.parameters:.3f}x"
    )
    print(
        f"\nload: open loop, 1 image/request, tasks uniform, {seconds:.0f} s per run; the "
        f"shared server's closed-loop capacity {capacity:.1f} req/s"
    )
    print(f"  {'setup':20s} {'offered':>8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>9s} failed")
    for name, runs in results.items():
        for rate, r in zip(rates, runs, strict=True):
            print(
                f"  {name:20s} {rate:8.1f} {r['throughput']:8.1f} {r['p50_ms']:8.1f} "
                f"{r['p99_ms']:9.1f} {r['failed']:6d}"
            )
    print(
        f"\none window ({len(tasks)} tasks x 4 images, in-process): paths share "
        f"{win['common']:.1f} of {win['length']:.1f} leading components on average, so "
        f"{100 * win['batched']:.1f}% of the parameter-weighted work runs batched across tasks; "
        f"{win['shared_s'] * 1e3:.1f} ms shared vs {win['alone_s'] * 1e3:.1f} ms each task "
        f"alone -> {win['alone_s'] / win['shared_s']:.2f}x"
    )
    print(
        f"memory ratio (one server / {len(tasks)} processes, target <= 0.4): "
        f"{shared_rss / total:.3f}"
    )


if __name__ == "__main__":
    main()
