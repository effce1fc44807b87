"""Input pipeline: peak memory flat in dataset size, and images/s against mu-small's step.

Writes synthetic 224-px JPEG image folders (ROOT/<class>/<image>, 10 classes) of N and 10×N
images into a temporary folder (by default hard links to 1,000 distinct JPEGs, so 100k
files take ~10 MB of disk; file count, listing, index and sampler scale as with distinct
files; ``--distinct`` writes real copies), then, each in a fresh process, streams
``--batches`` augmented training batches through the real streaming pipeline
(``TaskDataCache`` with no in-memory cache -> ``TrainSet.stream``: listing, fixed order,
seeded sampler, loader workers decoding, resizing to ``--image-size`` and augmenting) and
records the peak RSS of the main process plus that of its loader workers (``getrusage``).
Then, in the same run, alternating A/B, it measures the images/s the pipeline delivers (its
default loader workers) and the images/s a mu-small candidate's training step consumes at
the same image size on an in-memory batch (its top ``--cloned`` blocks, norm and head
trainable). On a CPU the engine trains a generation's candidates in lockstep, one per core
with single-threaded kernels, all on the same batch: the batch rate training needs is one
candidate's single-threaded step rate (``--threads 1``, the default). The temporary folder
is removed at the end.

Last line: pipeline images/s / training images/s (target >= 1.2); the line before it, the
peak RSS growth from N to 10×N (target within 10 %).

    python benchmarks/input_pipeline.py                      # 10k -> 100k, 32 px
    python benchmarks/input_pipeline.py --small 1000 --batches 10 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = 10
DISTINCT = 1000
SIDE = 224


def synthetic_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct 224-px JPEGs: smooth colour gradients, a shape and some noise."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / SIDE
    out = []
    for _ in range(count):
        a, b, c = rng.uniform(0, 1, 3), rng.uniform(-1, 1, 3), rng.uniform(-1, 1, 3)
        img = a[None, None] + b[None, None] * xx[..., None] + c[None, None] * yy[..., None]
        img = img * 180 + rng.normal(0, 8, (SIDE, SIDE, 3))
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        x0, y0 = rng.integers(0, SIDE - 60, 2)
        ImageDraw.Draw(im).ellipse(
            [int(x0), int(y0), int(x0) + 60, int(y0) + 40], fill=tuple(rng.integers(0, 255, 3))
        )
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def write_folder(root: Path, count: int, pool: Path, distinct: bool) -> None:
    """``count`` images in ``root/<class>/<i>.jpg``, round-robin over the pool's files."""
    pool_files = sorted(pool.iterdir())
    for k in range(CLASSES):
        (root / f"class{k:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        dest = root / f"class{i % CLASSES:02d}" / f"{i:07d}.jpg"
        src = pool_files[i % len(pool_files)]
        if distinct:
            shutil.copyfile(src, dest)
        else:
            os.link(src, dest)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One fresh process: stream ``--batches`` batches of the folder; peaks and timing."""
    import torch

    from mutask.trainer.config import DatasetConfig
    from mutask.trainer.data import Augmenter
    from mutask.trainer.iteration.taskdata import TaskDataCache

    torch.set_num_threads(1)
    started = time.perf_counter()
    cache = TaskDataCache(  # streamed: the pipeline is what is measured
        torch.device("cpu"), cache_bytes=0, log=lambda line: print(line, file=sys.stderr)
    )
    cfg = DatasetConfig(
        source=args.root, train_split="train[:90%]", validation_split="train[90%:95%]",
        test_split="train[95%:]",
    )  # fmt: skip
    data = cache.get("bench", cfg, args.image_size)
    listed = time.perf_counter() - started
    augmenter = Augmenter({"ds_crop": True, "ds_flip_left_right": True, "ds_hue_delta": 0.05})
    stream = data.train.stream(args.batch_size, 0, augmenter)
    next(stream)  # workers started, first batch in
    t0 = time.perf_counter()
    for _ in range(args.batches):
        x, _ = next(stream)
    seconds = time.perf_counter() - t0
    assert x.shape == (args.batch_size, 3, args.image_size, args.image_size)
    stream.close()
    del stream
    workers = cache.workers
    import gc

    gc.collect()
    time.sleep(0.5)  # let the loader reap its workers
    return {
        "images": len(data.train),
        "cached": data.cached,
        "workers": workers,
        "listing_seconds": listed,
        "images_per_second": args.batches * args.batch_size / seconds,
        "main_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def run_child(root: Path, args: argparse.Namespace, batches: int) -> dict[str, Any]:
    cmd = [
        sys.executable, __file__, "--child", "--root", str(root), "--image-size",
        str(args.image_size), "--batch-size", str(args.batch_size), "--batches", str(batches),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stdout}\n{done.stderr}")
    sys.stderr.write(done.stderr)  # the pipeline's own log lines
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def training_rate(args: argparse.Namespace) -> float:
    """Images/s of one mu-small candidate's training step on an in-memory batch."""
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, str(Path(__file__).parent))
    from step_overhead import build

    torch.set_num_threads(args.threads)
    model, own = build("mu-small", args.image_size, torch.device("cpu"), args.cloned)
    params = [p for m in own for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=gen)
    y = torch.randint(0, CLASSES, (args.batch_size,), generator=gen)
    steps = args.train_steps
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return steps * args.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10_000, help="images in the small folder")
    ap.add_argument("--growth", type=int, default=10, help="the large folder is this × small")
    ap.add_argument("--image-size", type=int, default=32, help="the model's resolution")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=40, help="batches streamed per run")
    ap.add_argument("--train-steps", type=int, default=8, help="timed training steps")
    ap.add_argument("--cloned", type=int, default=2, help="trainable top blocks of mu-small")
    ap.add_argument("--repeats", type=int, default=3, help="A/B speed repeats (median)")
    ap.add_argument(
        "--threads", type=int, default=1, help="training threads (1: one candidate per core)"
    )
    ap.add_argument("--distinct", action="store_true", help="real copies, not hard links")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="mutask-input-bench-"))
    try:
        t0 = time.perf_counter()
        pool = tmp / "pool"
        pool.mkdir()
        for k, data in enumerate(synthetic_jpegs(min(DISTINCT, args.small))):
            (pool / f"{k:04d}.jpg").write_bytes(data)
        sizes = (args.small, args.small * args.growth)
        roots = {n: tmp / f"images-{n}" for n in sizes}
        for n, root in roots.items():
            write_folder(root, n, pool, args.distinct)
        disk = sum(f.stat().st_size for f in pool.iterdir())
        print(
            f"wrote {sizes[0]:,} and {sizes[1]:,} synthetic {SIDE}-px JPEGs in "
            f"{time.perf_counter() - t0:.0f} s ({len(list(pool.iterdir()))} distinct, "
            f"{disk / 2**20:.1f} MiB{' + copies' if args.distinct else ', hard links'})"
        )
        peaks: dict[int, float] = {}
        for n in sizes:
            r = run_child(roots[n], args, args.batches)
            total = r["main_peak_mib"] + r["workers"] * r["worker_peak_mib"]
            peaks[n] = total
            print(
                f"{n:>9,} images: cached={r['cached']} listing {r['listing_seconds']:.1f} s, "
                f"{r['images_per_second']:,.0f} images/s; peak RSS main "
                f"{r['main_peak_mib']:,.0f} MiB + {r['workers']} worker(s) x "
                f"{r['worker_peak_mib']:,.0f} MiB = {total:,.0f} MiB"
            )
        rates: dict[str, list[float]] = {"pipeline": [], "training": []}
        for _ in range(args.repeats):
            rates["pipeline"].append(
                run_child(roots[sizes[0]], args, args.batches)["images_per_second"]
            )
            rates["training"].append(training_rate(args))
        pipe, train = (statistics.median(rates[k]) for k in ("pipeline", "training"))
        print(
            f"image size {args.image_size} px, batch {args.batch_size}, {os.cpu_count()} "
            f"CPU core(s), repeats {args.repeats} (medians)"
        )
        print(f"pipeline (decode 224-px JPEG, resize, augment): {pipe:,.0f} images/s")
        print(
            f"mu-small training step ({args.cloned} cloned blocks + head, {args.threads} "
            f"thread(s)): {train:,.1f} images/s"
        )
        growth = peaks[sizes[1]] / peaks[sizes[0]] - 1.0
        print(
            f"peak RSS {sizes[0]:,} -> {sizes[1]:,} images: {peaks[sizes[0]]:,.0f} -> "
            f"{peaks[sizes[1]]:,.0f} MiB ({growth:+.1%}, target within 10%)"
        )
        print(f"ratio pipeline/training images/s: {pipe / train:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
