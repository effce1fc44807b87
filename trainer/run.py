"""A trainer pod's main: signals, progress sinks, the device, one task iteration, exit code.

`mutask introduce` (what the operator's Job runs) ends here: SIGTERM stops training at the
next step (exit 75, finished generations checkpointed), a fenced-off writer exits 3,
detected forgetting exits 1 (see :class:`mutask.contract.ExitCode`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

from mutask.contract import ROOT_TASK, ExitCode
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine, FencedError
from mutask.trainer.iteration.exchange import (
    ExchangeAborted,
    Worker,
    aborting_others,
    wait_for_root,
)
from mutask.trainer.runtime.device import on_xla, select_device
from mutask.trainer.runtime.kube_status import KubeStatusReporter
from mutask.trainer.runtime.metrics import TrainerMetrics
from mutask.trainer.runtime.signals import StopFlag
from mutask.trainer.runtime.threads import requested_cpus
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import Interrupted


def run_introduction(cfg: IntroduceConfig, *, quiet: bool = False, verify: bool = True) -> int:
    """What a trainer pod runs: metrics, status reporting, SIGTERM handling, one iteration.

    On XLA it runs as one worker per chip (:func:`mutask.trainer.chips.run_on_chips`).
    """
    if on_xla(cfg.device, os.environ):
        from mutask.trainer.chips import run_on_chips  # needs torch_xla

        return run_on_chips(cfg, quiet=quiet, verify=verify)
    stop = StopFlag()
    stop.install()
    return run_worker(cfg, quiet=quiet, verify=verify, should_stop=stop)


def run_worker(
    cfg: IntroduceConfig,
    *,
    quiet: bool,
    verify: bool,
    should_stop: Callable[[], bool],
    worker: Worker | None = None,
    attempt: str = "0",
) -> int:
    """One worker's run (the only one, or one chip's): worker 0 also serves metrics,
    reports status, bootstraps, publishes, verifies and prints the result."""
    worker = worker or Worker()
    sinks: list[Any] = []
    if worker.lead and cfg.metrics_port is not None:
        metrics = TrainerMetrics(cfg.task)
        metrics.serve(cfg.metrics_port)
        sinks.append(metrics)
    reporter = KubeStatusReporter.from_env() if worker.lead else None
    if reporter is not None:
        sinks.append(reporter)
    device = select_device(cfg.device, cfg.precision)
    engine = Engine(
        SystemStore.open(cfg.store),
        device,
        sinks=sinks,
        should_stop=should_stop,
        progress_bars=not quiet and worker.lead,
        workers=cfg.workers,
        cpus=requested_cpus(os.environ),
        worker=worker,
        attempt=attempt,
    )
    where = f", worker {worker.rank + 1}/{worker.count}" if worker.count > 1 else ""
    print(
        f"mutask: task {cfg.task} on {device.describe()}{where}, store {engine.store.uri}",
        file=sys.stderr,
    )
    try:
        with aborting_others(engine.store, cfg.task, attempt, worker):
            if cfg.bootstrap_root and engine.store.read_manifest(ROOT_TASK) is None:
                if worker.lead:
                    bootstrap_root(engine, cfg)
                else:
                    wait_for_root(engine.store, cfg.task, attempt, should_stop)
                if cfg.task == ROOT_TASK:
                    return ExitCode.OK
            if not worker.lead:
                engine.follow(cfg)
                return ExitCode.OK
            out = engine.introduce(cfg, verify=verify)
    except Interrupted:
        print("mutask: stopped by signal; finished generations are checkpointed", file=sys.stderr)
        return ExitCode.PREEMPTED
    except FencedError as err:
        print(f"mutask: fenced: {err}", file=sys.stderr)
        return ExitCode.FENCED
    except ExchangeAborted as err:
        print(f"mutask: stopped: {err}", file=sys.stderr)
        return ExitCode.FAILED
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
