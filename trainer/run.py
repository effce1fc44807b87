"""A trainer pod's main: checks, signals, progress sinks, the device, one task iteration, exit code;
and `mutask bootstrap`'s (the root alone).

`mutask introduce` (what the operator's Job runs) ends here. Everything a user can get wrong
is checked before anything is written (store URI, device, metrics port, then the
:mod:`~mutask.trainer.iteration.preflight`: store health, model, data, memory) and fails with
a typed error (exit 2, see :mod:`mutask.trainer.errors`). Then: SIGTERM stops training at the
next step (exit 75, finished generations checkpointed), a fenced-off writer exits 3, detected
forgetting exits 1 (see :class:`mutask.contract.ExitCode`). On XLA the iteration runs as one
worker per chip (:mod:`mutask.trainer.chips`), each through :func:`run_worker`. A pod of a
multi-host run (:mod:`mutask.trainer.runtime.hosts`) runs its host's workers among all hosts'.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Collection
from typing import Any

from mutask.contract import ROOT_TASK, ExitCode
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.errors import PortError
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine, IntroductionOutcome
from mutask.trainer.iteration.exchange import (
    ExchangeAborted,
    Worker,
    aborting_others,
    wait_for_root,
)
from mutask.trainer.iteration.preflight import MODEL_FIELDS, preflight
from mutask.trainer.runtime.device import on_xla, select_device
from mutask.trainer.runtime.hosts import hosts_from_env
from mutask.trainer.runtime.kube_status import KubeStatusReporter
from mutask.trainer.runtime.metrics import TrainerMetrics
from mutask.trainer.runtime.signals import StopFlag
from mutask.trainer.runtime.threads import requested_cpus
from mutask.trainer.store.layout import BLOBS, task_prefix
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
        log=_stderr,  # stdout is the JSON report alone
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
    cfg = preflight(engine, cfg, log=_stderr).cfg  # data, image size (0: the data's), memory
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


def run_introduction(
    cfg: IntroduceConfig,
    *,
    quiet: bool = False,
    verify: bool = True,
    explicit_model: Collection[str] = MODEL_FIELDS,
) -> int:
    """What a trainer pod runs: checks, metrics, status reporting, SIGTERM handling, one
    iteration. ``explicit_model``: the model fields the user gave (see the preflight).

    On XLA it runs as one worker per chip (:func:`mutask.trainer.chips.run_on_chips`); on
    several hosts, as this host's share of the workers of all of them.
    """
    SystemStore.open(cfg.store)  # the URI is checked before anything else
    hosts = hosts_from_env(os.environ)
    if on_xla(cfg.device, os.environ):  # the device is chosen in each chip's worker
        from mutask.trainer.chips import run_on_chips  # needs torch_xla

        return run_on_chips(
            cfg, quiet=quiet, verify=verify, explicit_model=explicit_model, hosts=hosts
        )
    select_device(cfg.device, cfg.precision)  # a bad device fails before the signal handler
    stop = StopFlag()
    stop.install()
    return run_worker(
        cfg,
        quiet=quiet,
        verify=verify,
        should_stop=stop,
        explicit_model=explicit_model,
        worker=Worker(*hosts.place()),
        attempt=hosts.attempt or "0",
    )


def run_worker(
    cfg: IntroduceConfig,
    *,
    quiet: bool,
    verify: bool,
    should_stop: Callable[[], bool],
    explicit_model: Collection[str] = MODEL_FIELDS,
    worker: Worker | None = None,
    attempt: str = "0",
) -> int:
    """One worker's run (the only one, or one chip's): worker 0 also serves metrics,
    reports status, bootstraps, publishes, verifies and prints the result."""
    worker = worker or Worker()
    store = SystemStore.open(cfg.store)
    device = select_device(cfg.device, cfg.precision)
    sinks: list[Any] = []
    stop_metrics: Callable[[], None] | None = None
    if worker.lead and cfg.metrics_port is not None:
        metrics = TrainerMetrics(cfg.task)
        try:
            stop_metrics = metrics.serve(cfg.metrics_port)
        except OSError as err:
            raise PortError("metrics_port", cfg.metrics_port, f"cannot listen: {err}") from err
        sinks.append(metrics)
    try:
        reporter = KubeStatusReporter.from_env() if worker.lead else None
        if reporter is not None:
            sinks.append(reporter)
        engine = Engine(
            store,
            device,
            sinks=sinks,
            should_stop=should_stop,
            progress_bars=not quiet and worker.lead,
            log=_stderr,  # stdout is the JSON report alone
            workers=cfg.workers,
            cpus=requested_cpus(os.environ),
            worker=worker,
            attempt=attempt,
        )
        with aborting_others(store, cfg.task, attempt, worker):
            checked = preflight(engine, cfg, explicit=explicit_model, log=_stderr)
            cfg = checked.cfg
            if worker.lead:
                store.sweep((task_prefix(cfg.task), BLOBS))  # leftovers of killed writers
            where = f", worker {worker.rank + 1}/{worker.count}" if worker.count > 1 else ""
            print(
                f"mutask: task {cfg.task} on {device.describe()}{where}, store {store.uri}",
                file=sys.stderr,
            )
            try:
                if checked.bootstrap:
                    if worker.lead:
                        bootstrap_root(engine, cfg)
                    else:
                        wait_for_root(store, cfg.task, attempt, should_stop)
                if not worker.lead:
                    engine.follow(cfg)
                    return ExitCode.OK
                out = engine.introduce(cfg, verify=verify)
            except Interrupted:
                print(
                    "mutask: stopped by signal; finished generations are checkpointed",
                    file=sys.stderr,
                )
                return ExitCode.PREEMPTED
            except ExchangeAborted as err:
                print(f"mutask: stopped: {err}", file=sys.stderr)
                return ExitCode.FAILED
        return _report(out)
    finally:
        if stop_metrics is not None:
            stop_metrics()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _report(out: IntroductionOutcome) -> int:
    """Print the outcome; exit 1 if another task's weights or outputs changed (forgetting).
    Tasks the store holds damaged (not this run's doing: it never rewrites anything
    published) are named but do not fail the run."""
    forgotten = [v.task for v in out.verifications if v.forgotten]
    damaged = {v.task: v.damage for v in out.verifications if v.damage}
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
                "no_forgetting_verified": not forgotten and not damaged,
                "damaged_tasks": sorted(damaged),
                "examples": out.examples,
            },
            indent=2,
            sort_keys=True,
            default=str,
        )
    )
    for task, why in sorted(damaged.items()):
        print(f"mutask: warning: task {task} could not be verified: {why}", file=sys.stderr)
    if forgotten:
        print(f"mutask: FORGETTING DETECTED in {forgotten}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
