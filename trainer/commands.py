"""The implementations behind each `mutask` subcommand (parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mutask.contract import ExitCode
from mutask.trainer.cli import config_from_args, dump
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import DatasetError
from mutask.trainer.engine import Engine, FencedError
from mutask.trainer.evolution import ROOT_TASK
from mutask.trainer.models import CheckpointError
from mutask.trainer.runtime.device import requested_cpus, select_device
from mutask.trainer.runtime.signals import StopFlag
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.system_store import SystemStore, system_from_manifests
from mutask.trainer.summary import system_table, task_rows
from mutask.trainer.training import Interrupted

BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (DatasetError, CheckpointError)


def _engine(args: argparse.Namespace, store: str, quiet: bool = False, **kw: Any) -> Engine:
    device = select_device(getattr(args, "device", "auto"))
    return Engine(SystemStore.open(store), device, progress_bars=not quiet, **kw)


def run_introduction(cfg: IntroduceConfig, *, quiet: bool = False, verify: bool = True) -> int:
    """What a trainer pod runs: metrics, status reporting, SIGTERM handling, one iteration."""
    from mutask.trainer.bootstrap import bootstrap_root
    from mutask.trainer.runtime.kube_status import KubeStatusReporter
    from mutask.trainer.runtime.metrics import TrainerMetrics

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
        dump(
            {
                "task": out.task,
                "iteration": out.iteration,
                "path": out.best.id,
                "score": m["score"],
                "test_accuracy": m["test_accuracy"],
                "params": m["params"],
                "seconds": round(out.seconds, 1),
                "no_forgetting_verified": not bad,
            }
        )
    )
    if bad:
        print(f"mutask: FORGETTING DETECTED in {[v.task for v in bad]}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK


def cmd_introduce(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.device != "auto":
        cfg.device = args.device
    return run_introduction(
        cfg, quiet=getattr(args, "quiet", False), verify=not getattr(args, "no_verify", False)
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from mutask.trainer.demo import run_demo

    return run_demo(args)


def cmd_show(args: argparse.Namespace) -> int:
    store = SystemStore.open(args.store)
    manifests = store.manifests()
    if not manifests:
        print(
            f"{store.uri}: empty store (run `mutask demo` or `mutask introduce "
            "--bootstrap-root ...`)"
        )
        return ExitCode.OK
    system = system_from_manifests(manifests)
    rows = task_rows(system, manifests)
    if args.json:
        print(
            dump(
                {
                    "store": store.uri,
                    "tasks": rows,
                    "components": len(system.components),
                    "total_params": sum(c.num_params for c in system.components.values()),
                }
            )
        )
    else:
        print(system_table(system, manifests))
    return ExitCode.OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mutask.trainer.config import DatasetConfig
    from mutask.trainer.evolution import Path
    from mutask.trainer.training import evaluate

    engine = _engine(args, args.store, quiet=True)
    _, manifests, pool = engine.load(args.seed)
    tasks = args.tasks or sorted(t for t, m in manifests.items() if m.get("dataset"))
    results = {}
    for task in tasks:
        if task not in manifests:
            print(
                f"mutask: error: task {task!r} is not in {engine.store.uri} "
                f"(known: {sorted(manifests)})",
                file=sys.stderr,
            )
            return ExitCode.FAILED
        m = manifests[task]
        data = engine.data.get(task, DatasetConfig(**m["dataset"]), int(m["shape"]["image_size"]))
        x, y = data.test if args.split == "test" else data.validation
        results[task] = evaluate(pool.model(Path.from_dict(m["path"])), x, y)
        print(f"{task:30s} {args.split} accuracy {results[task]:.4f}")
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    engine = _engine(args, args.store, quiet=True)
    checks = engine.verify(args.tasks or None)
    for v in checks:
        status = "ok" if v.ok else "CHANGED"
        print(
            f"{v.task:30s} {status:8s} hashes={'ok' if v.hashes_ok else v.bad_components} "
            f"test={v.test_accuracy_now} (recorded {v.test_accuracy_recorded}) "
            f"probe={v.probe_ok}"
        )
    return ExitCode.OK if all(v.ok for v in checks) else ExitCode.FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path as FsPath

    from mutask.trainer.evolution import Path
    from mutask.trainer.models import save_exported

    engine = _engine(args, args.store, quiet=True)
    _, manifests, pool = engine.load(args.seed)
    if args.task not in manifests:
        print(
            f"mutask: error: task {args.task!r} is not in {engine.store.uri} "
            f"(known: {sorted(manifests)})",
            file=sys.stderr,
        )
        return ExitCode.FAILED
    m = manifests[args.task]
    out = args.out or FsPath(f"{args.task.replace(':', '_')}.safetensors")
    model = pool.model(Path.from_dict(m["path"]))
    save_exported(
        model,
        out,
        {"task": args.task, "path": m["path"]["id"], "num_classes": str(m["num_classes"])},
    )
    print(f"wrote {out} ({sum(p.numel() for p in model.parameters()):,} params)")
    return ExitCode.OK


def cmd_gc(args: argparse.Namespace) -> int:
    store = SystemStore.open(args.store)
    report = collect_garbage(store, grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {len(report.deleted)} blob(s), {report.bytes_freed:,} bytes; kept "
        f"{report.kept} referenced, {len(report.too_young)} too young"
    )
    return ExitCode.OK
