"""A trainer pod's main: signals, progress sinks, the device, one task iteration, exit code;
and `mutask bootstrap`'s (the root alone).

`mutask introduce` (what the operator's Job runs) ends here: SIGTERM stops training at the
next step (exit 75, finished generations checkpointed), a fenced-off writer exits 3,
detected forgetting exits 1 (see :class:`mutask.contract.ExitCode`).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mutask.contract import ROOT_TASK, ExitCode
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine, FencedError
from mutask.trainer.runtime.device import select_device
from mutask.trainer.runtime.kube_status import KubeStatusReporter
from mutask.trainer.runtime.metrics import TrainerMetrics
from mutask.trainer.runtime.signals import StopFlag
from mutask.trainer.runtime.threads import requested_cpus
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import Interrupted


def run_bootstrap(cfg: IntroduceConfig, *, quiet: bool = False) -> int:
    """`mutask bootstrap`: train (or load) the root of an empty store; SIGTERM stops it."""
    stop = StopFlag()
    stop.install()
    device = select_device(cfg.device, cfg.precision)
    engine = Engine(
        SystemStore.open(cfg.store),
        device,
        should_stop=stop,
        progress_bars=not quiet,
        workers=cfg.workers,
        cpus=requested_cpus(os.environ),
    )
    if engine.store.read_manifest(ROOT_TASK) is not None:
        print(
            f"mutask: error: {engine.store.uri} already has a root model (a new root needs a "
            "new store)",
            file=sys.stderr,
        )
        return ExitCode.BAD_INPUT
    print(f"mutask: root on {device.describe()}, store {engine.store.uri}", file=sys.stderr)
    try:
        manifest = bootstrap_root(engine, cfg)
    except Interrupted:
        print("mutask: stopped by signal; nothing was published", file=sys.stderr)
        return ExitCode.PREEMPTED
    print(
        json.dumps(
            {
                "task": ROOT_TASK,
                "trained_on": manifest.get("bootstrap_task"),
                "test_accuracy": manifest["test_accuracy"],
                "params": manifest["params"],
                "image_size": manifest["shape"]["image_size"],
                **manifest.get("training", {}),
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    return ExitCode.OK


def run_introduction(cfg: IntroduceConfig, *, quiet: bool = False, verify: bool = True) -> int:
    """What a trainer pod runs: metrics, status reporting, SIGTERM handling, one iteration."""
    stop = StopFlag()
    stop.install()
    sinks: list[Any] = []
    if cfg.metrics_port is not None:
        metrics = TrainerMetrics(cfg.task)
        metrics.serve(cfg.metrics_port)
        sinks.append(metrics)
    reporter = KubeStatusReporter.from_env()
    if reporter is not None:
        sinks.append(reporter)
    device = select_device(cfg.device, cfg.precision)
    engine = Engine(
        SystemStore.open(cfg.store),
        device,
        sinks=sinks,
        should_stop=stop,
        progress_bars=not quiet,
        workers=cfg.workers,
        cpus=requested_cpus(os.environ),
    )
    print(
        f"mutask: task {cfg.task} on {device.describe()}, store {engine.store.uri}", file=sys.stderr
    )
    try:
        if cfg.bootstrap_root and engine.store.read_manifest(ROOT_TASK) is None:
            bootstrap_root(engine, cfg)
            if cfg.task == ROOT_TASK:
                return ExitCode.OK
        out = engine.introduce(cfg, verify=verify)
    except Interrupted:
        print("mutask: stopped by signal; finished generations are checkpointed", file=sys.stderr)
        return ExitCode.PREEMPTED
    except FencedError as err:
        print(f"mutask: fenced: {err}", file=sys.stderr)
        return ExitCode.FENCED
    bad = [v for v in out.verifications if not v.ok]
    m = out.manifest
    print(
        json.dumps(
            {
                "task": out.task,
                "iteration": out.iteration,
                "path": out.best.id,
                "score": m["score"],
                "test_accuracy": m["test_accuracy"],
                "params": m["params"],
                "seconds": round(out.seconds, 1),
                "examples": out.examples,
                "no_forgetting_verified": not bad,
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    if bad:
        print(f"mutask: FORGETTING DETECTED in {[v.task for v in bad]}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
