"""The load client of benchmarks/serve.py, run as its own process: the stock OIP client
(tritonclient's aio HTTP client), one FP32 image per request, tasks drawn uniformly (seeded).

Open loop (``rate``): Poisson arrivals at ``rate`` requests/s for ``seconds``, whatever the
answers; closed loop (``concurrency``): that many requests always in flight. Prints one JSON
line: sent, done, failed, throughput (answers/s), p50 and p99 latency (ms).

    python benchmarks/serve_load.py '{"targets": {"task": "127.0.0.1:8080"}, "size": 16,
                                      "seconds": 5, "rate": 50}'
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import numpy as np
import tritonclient.http.aio as aioclient
from tritonclient.http import InferInput


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    targets: dict[str, str] = spec["targets"]
    size, seconds = int(spec["size"]), float(spec["seconds"])
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
    start = time.perf_counter()
    if spec.get("concurrency"):

        async def worker() -> None:
            while time.perf_counter() - start < seconds:
                await one(rng.choice(tasks))

        await asyncio.gather(*(worker() for _ in range(int(spec["concurrency"]))))
        sent, late = len(latencies) + failures, 0
    else:
        pending, t = [], 0.0
        while t < seconds:
            t += rng.expovariate(float(spec["rate"]))
            delay = start + t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(rng.choice(tasks))))
        sent = len(pending)
        _, unfinished = await asyncio.wait(pending, timeout=10)
        for p in unfinished:
            p.cancel()
        late = len(unfinished)
    elapsed = time.perf_counter() - start
    for c in clients.values():
        await c.close()
    lat = sorted(latencies)
    return {
        "sent": sent,
        "done": len(lat),
        "failed": failures + late,
        "throughput": len(lat) / elapsed,
        "p50_ms": 1e3 * lat[len(lat) // 2] if lat else float("nan"),
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(json.loads(sys.argv[1])))))
