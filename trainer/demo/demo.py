"""`mutask demo`, the main job: grow a system on built-in data on CPU in a few minutes.

Bootstraps a root ViT on the MNIST subset at 16x16 (``DEMO_IMAGE_SIZE``: downscaled from
28x28, which the run says, so that the demo takes minutes on a CPU; trained until validation
stops improving), introduces three tasks (one private) from sklearn digits and MNIST with
the ``quick`` budget preset, revisits the first, verifies after every step that no earlier
task changed by a single bit, then prints a table (with the training examples and time
behind every accuracy) and writes a report with plots. Config as code below.
"""

from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import replace

from mutask.contract import ExitCode
from mutask.trainer.config import (
    BUDGETS,
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.demo.report import write_report
from mutask.trainer.demo.summary import system_table
from mutask.trainer.evolution import ROOT_TASK, Visit, round_robin
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore, system_from_manifests

ROOT = DatasetConfig(source="mnist")
DEMO_IMAGE_SIZE = 16  # px: a mu-tiny ViT from scratch learns MNIST ~3x faster than at 28 px
ROOT_EPOCHS = 10.0  # at most; the root stops earlier once its validation accuracy plateaus
TASKS: dict[str, DatasetConfig] = {
    "digits": DatasetConfig(source="digits"),
    "mnist-rot90-0to4": DatasetConfig(source="mnist", labels=[0, 1, 2, 3, 4], transform="rot90"),
    "private:digits-parity": DatasetConfig(
        source="digits", label_map={str(i): i % 2 for i in range(10)}
    ),
}
REVISIT = "digits"


def demo_configs(
    store: str, seed: int, quick: bool
) -> tuple[IntroduceConfig, list[IntroduceConfig]]:
    """The root's bootstrap config and one config per task visit (revisit last)."""
    budget = replace(BUDGETS["quick"], max_validation_examples=1000)
    epochs = ROOT_EPOCHS
    if quick:  # a smoke run: seconds, not accuracy
        budget = BudgetConfig(
            generations=1,
            candidates=2,
            validation_rounds=1,
            steps_per_round=4,
            batch_size=32,
            max_validation_examples=200,
        )
        epochs = 0.25
    root = IntroduceConfig(
        task="mnist",
        dataset=ROOT,
        store=store,
        budget=budget,
        search=SearchConfig(size_scale=0.9),
        seed=seed,
        model=ModelConfig(preset="mu-tiny", image_size=DEMO_IMAGE_SIZE, max_epochs=epochs),
        device="cpu",
    )
    schedule = [*round_robin(list(TASKS)), Visit(REVISIT, 1)]
    return root, [replace(root, task=v.task, dataset=TASKS[v.task]) for v in schedule]


def run_demo(args: argparse.Namespace) -> int:
    store_dir = args.store
    if args.fresh:
        shutil.rmtree(store_dir, ignore_errors=True)
    root_cfg, visits = demo_configs(store_dir, args.seed, args.quick)
    device = select_device(args.device)
    engine = Engine(
        SystemStore.open(store_dir), device, progress_bars=not args.quiet, workers=args.workers
    )
    print(f"mutask demo: store {engine.store.uri}, device {device.describe()}")
    started = time.perf_counter()
    timeline: list[dict[str, object]] = []
    if engine.store.read_manifest(ROOT_TASK) is None:
        print(
            f"[1/{len(visits) + 1}] bootstrapping the root ViT ({root_cfg.model.preset}) "
            f"on {root_cfg.dataset.source}, fully trainable, until its validation accuracy "
            f"stops improving (at most {root_cfg.model.max_epochs:g} epochs)"
        )
        bootstrap_root(engine, root_cfg)
    else:
        print("root found in the store: skipping bootstrap (use --fresh to start over)")
    b = visits[0].budget
    size = (
        f"{b.steps_per_round} steps of {b.batch_size} a round"
        if b.steps_per_round
        else f"{b.epochs:g} epochs of the task's data"
    )
    print(
        f"budget per task: {'a smoke budget (--quick)' if args.quick else 'the quick preset'}"
        f" (README: Budgets): {b.generations} generation(s) x {b.candidates} candidates, up "
        f"to {b.validation_rounds} rounds each, {size}"
        f"{', successive halving + final phase' if b.halving else ''}; accuracies below "
        "are validation (selection) and test (never used for selection)"
    )
    all_ok = True
    done = set(engine.store.tasks())
    for i, cfg in enumerate(visits, start=2):
        revisit = cfg.task in done
        print(
            f"[{i}/{len(visits) + 1}] {'revisiting' if revisit else 'introducing'} "
            f"{cfg.task} ({cfg.dataset.source})"
        )
        out = engine.introduce(cfg)
        done.add(cfg.task)
        bad = [v.task for v in out.verifications if not v.ok]
        all_ok &= not bad
        print(
            f"    best {out.best.id}: val {out.best.quality:.4f}, test "
            f"{out.manifest['test_accuracy']:.4f} after {out.examples:,} training examples "
            f"({out.seconds:.0f} s), +{out.manifest['params']['added']:,} params; "
            f"no-forgetting check on {len(out.verifications)} task(s): "
            f"{'OK' if not bad else 'CHANGED ' + str(bad)}"
        )
        manifests = engine.store.manifests()
        timeline.append(
            {
                "step": f"{'revisit' if revisit else 'add'} {cfg.task}",
                "total_params": sum(
                    c.num_params for c in system_from_manifests(manifests).components.values()
                ),
                "tasks": len(manifests) - 1,
            }
        )
    final = engine.verify()
    all_ok &= all(v.ok for v in final)
    manifests = engine.store.manifests()
    system = system_from_manifests(manifests)
    print()
    print(system_table(system, manifests))
    print(
        f"\nno forgetting: every task's frozen tensors hash-identical and test accuracy "
        f"re-evaluated bit-identical: {'VERIFIED' if all_ok else 'FAILED'}"
    )
    report = write_report(
        args.report, system, manifests, timeline, final, seconds=time.perf_counter() - started
    )
    print(f"report: {report}  (total {time.perf_counter() - started:.0f} s)")
    return ExitCode.OK if all_ok else ExitCode.FAILED
