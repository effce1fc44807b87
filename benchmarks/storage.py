"""Benchmark: storage cost of the content-addressed system store, and publish overhead.

Bootstraps a tiny root, introduces N tasks (sklearn digits under different transforms) with
the real engine into a fresh store, then reports

* bytes stored (component blobs + manifests, after `mutask gc` with no grace) vs the bytes
  of the unique tensors the manifests reference (params + the SGD momentum kept for
  inheritance), and vs the unique params alone;
* the same vs naive per-task full-model checkpoints (each task's whole path, params only);
* publish time (content-addressed blobs written after an existence check, lease confirm
  by CAS, manifest by CAS) vs a raw upload of the very same bytes (plain writes), measured
  in the same run on the same backend, median of R repetitions.

The last line is the stored/unique ratio (target <= 1.05).

    python benchmarks/storage.py --backend local
    python benchmarks/storage.py --backend gcs --tasks 6   # starts fake-gcs-server itself
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load

from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, ModelConfig
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.lease import Lease
from mutask.trainer.store.system_store import BLOBS, TASKS, SystemStore, encode_component

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "store"))
from gcs_emulator import FakeGcs

TRANSFORMS = ["rot90", "rot180", "flip_lr", "flip_ud", "transpose", "invert"]


def config(
    task: str, store: str, transform: str | None, args: argparse.Namespace
) -> IntroduceConfig:
    return IntroduceConfig(
        task=task,
        store=store,
        device="cpu",
        seed=args.seed,
        dataset=DatasetConfig(source="digits", transform=transform),
        model=ModelConfig(preset=args.preset, image_size=args.image_size),
        budget=BudgetConfig(
            generations=args.generations,
            candidates=args.candidates,
            validation_rounds=1,
            steps_per_round=args.steps,
        ),
    ).validate()


def grow(uri: str, args: argparse.Namespace) -> SystemStore:
    store = SystemStore.open(uri)
    engine = Engine(store, select_device("cpu"), progress_bars=False, log=lambda _m: None)
    bootstrap_root(engine, config("digits", uri, None, args))
    for i in range(args.tasks):
        tf = TRANSFORMS[i % len(TRANSFORMS)]
        name = tf.replace("_", "-") + (f"-{i}" if i >= len(TRANSFORMS) else "")
        out = engine.introduce(config(name, uri, tf, args), verify=False)
        print(f"  introduced {name}: path {out.best.id}, {out.seconds:.1f}s")
    return store


def accounting(store: SystemStore) -> dict[str, float]:
    manifests = store.manifests()
    blobs = {e["blob"] for m in manifests.values() for e in m["components"].values()}
    param_bytes = tensor_bytes = 0
    for digest in sorted(blobs):
        for name, t in st_load(store.get_blob(digest)).items():
            tensor_bytes += t.numel() * t.element_size()
            if name.startswith("param/"):
                param_bytes += t.numel() * t.element_size()
    naive = 0
    for m in manifests.values():
        naive += sum(int(e["num_params"]) * 4 for e in m["components"].values())
    stored_blobs = sum(o.size for o in store.objects.list(BLOBS))
    stored_meta = sum(o.size for o in store.objects.list(TASKS) if o.key.endswith("manifest.json"))
    return {
        "tasks": len(manifests),
        "unique_params": param_bytes,
        "unique_tensors": tensor_bytes,
        "stored_blobs": stored_blobs,
        "stored_manifests": stored_meta,
        "naive": naive,
    }


def publish_timing(store: SystemStore, reps: int) -> tuple[float, float, int]:
    """Median seconds of a publish vs a raw upload of the same bytes (fresh content)."""
    m = store.manifests()
    last = max((t for t in m if t != "__root__"), key=lambda t: m[t]["published_at"])
    created = m[last]["created"]
    shapes = [st_load(store.get_blob(m[last]["components"][c]["blob"])) for c in created]
    ours, raw = [], []
    size = 0
    for r in range(reps):
        gen = torch.Generator().manual_seed(r)
        payload = [
            encode_component(
                {
                    k[6:]: torch.randn(v.shape, generator=gen)
                    for k, v in s.items()
                    if k.startswith("param/")
                },
                {
                    k[9:]: torch.randn(v.shape, generator=gen)
                    for k, v in s.items()
                    if k.startswith("momentum/")
                },
            )
            for s in shapes
        ]
        manifest: dict[str, Any] = {**m[last], "components": dict(m[last]["components"])}
        task = f"bench-{uuid.uuid4().hex[:8]}"
        # raw: the same blob bytes and manifest bytes, plain writes, no checks
        t0 = time.perf_counter()
        for i, data in enumerate(payload):
            store.objects.write(f"raw/{task}/{i}", data)
        store.objects.write(f"raw/{task}/manifest.json", repr(manifest).encode())
        raw.append(time.perf_counter() - t0)
        # ours: content-addressed blobs, lease confirm (CAS), manifest CAS
        with Lease(store.objects, task, ttl=60) as lease:
            t0 = time.perf_counter()
            for cid, data in zip(created, payload, strict=True):
                manifest["components"][cid] = {
                    **manifest["components"][cid],
                    "blob": store.put_blob(data),
                }
            lease.confirm()
            store.publish(task, manifest, expected=0)
            ours.append(time.perf_counter() - t0)
        size = sum(len(p) for p in payload)
        for o in store.objects.list(f"raw/{task}/"):
            store.objects.delete(o.key)
        store.objects.delete(f"tasks/{task}/manifest.json")
        store.objects.delete(f"tasks/{task}/lease.json")
    return statistics.median(ours), statistics.median(raw), size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["local", "gcs"], default="local")
    p.add_argument("--tasks", type=int, default=4)
    p.add_argument("--preset", default="mu-tiny")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--generations", type=int, default=2)
    p.add_argument("--candidates", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.backend == "gcs":
            server = FakeGcs().start()
            os.environ.update(server.env())
            server.create_bucket("mutask-bench")
            uri = "gs://mutask-bench/system"
        else:
            uri = os.path.join(tmp, "store")
        try:
            print(
                f"backend {args.backend}: {uri}; {args.tasks} tasks, preset {args.preset} "
                f"@{args.image_size}px, {args.generations} gen x {args.candidates} cand"
            )
            store = grow(uri, args)
            before = sum(o.size for o in store.objects.list(BLOBS))
            gc = collect_garbage(store, grace_seconds=0)
            a = accounting(store)
            ours, raw, size = publish_timing(store, args.reps)
        finally:
            if server is not None:
                server.stop()
    stored = a["stored_blobs"] + a["stored_manifests"]
    print(
        f"blobs before gc        {before:>12,} B  (gc freed {gc.bytes_freed:,} B of "
        f"{len(gc.deleted)} unreferenced candidate blobs)"
    )
    print(
        f"stored after gc        {stored:>12,} B  (blobs {a['stored_blobs']:,} + manifests "
        f"{a['stored_manifests']:,}), {a['tasks']:.0f} published paths incl. root"
    )
    print(
        f"unique params          {a['unique_params']:>12,} B  -> stored/params   "
        f"{stored / a['unique_params']:.3f}x"
    )
    print(
        f"unique params+momentum {a['unique_tensors']:>12,} B  -> stored/unique   "
        f"{stored / a['unique_tensors']:.3f}x"
    )
    print(
        f"naive full checkpoints {2 * a['naive']:>12,} B  -> stored/naive    "
        f"{stored / (2 * a['naive']):.3f}x (one full model + momentum per task; "
        f"params only: {a['naive']:,} B vs unique params "
        f"{a['unique_params'] / a['naive']:.3f}x)"
    )
    print(
        f"publish {ours * 1e3:.1f} ms vs raw upload {raw * 1e3:.1f} ms of the same "
        f"{size:,} B -> {ours / raw:.2f}x (median of {args.reps})"
    )
    print(f"stored/unique ratio: {stored / a['unique_tensors']:.3f}")


if __name__ == "__main__":
    main()
