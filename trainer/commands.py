"""What `mutask demo|show|evaluate|verify|export|gc|serve` do (parsing and dispatch: cli.py;
`introduce`: run.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from mutask.contract import ExitCode
from mutask.trainer.data import DatasetError
from mutask.trainer.demo.summary import system_table, task_rows
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.models import CheckpointError
from mutask.trainer.runtime.device import precision_dtype, select_device
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.system_store import SystemStore, system_from_manifests

BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (DatasetError, CheckpointError)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def _engine(args: argparse.Namespace, store: str, quiet: bool = False, **kw: Any) -> Engine:
    device = select_device(getattr(args, "device", "auto"))
    return Engine(SystemStore.open(store), device, progress_bars=not quiet, **kw)


def cmd_demo(args: argparse.Namespace) -> int:
    from mutask.trainer.demo.demo import run_demo

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
        model = pool.model(Path.from_dict(m["path"]))
        autocast = precision_dtype(m.get("precision") or "float32")  # as it was published
        results[task] = evaluate(model, x, y, autocast=autocast)
        print(f"{task:30s} {args.split} accuracy {results[task]:.4f}")
    return ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    engine = _engine(args, args.store, quiet=True)
    checks = engine.verify(args.tasks or None)
    for v in checks:
        status = "ok" if v.ok else "CHANGED"
        print(
            f"{v.task:30s} {status:8s} hashes={'ok' if v.hashes_ok else v.bad_components} "
            f"test={v.test_accuracy_now} (recorded {v.test_accuracy_recorded}"
            f"{'' if v.accuracy_compared else ', not compared here'}) "
            f"probe={v.probe_ok} precision={v.precision}"
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
        {
            "task": args.task,
            "path": m["path"]["id"],
            "num_classes": str(m["num_classes"]),
            "iteration": str(m.get("iteration", 0)),
            "dataset": json.dumps(m.get("dataset")),
        },
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


def cmd_serve(args: argparse.Namespace) -> int:
    from mutask.trainer.serving.command import serve

    return serve(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "show": cmd_show,
    "evaluate": cmd_evaluate,
    "verify": cmd_verify,
    "export": cmd_export,
    "gc": cmd_gc,
    "serve": cmd_serve,
}
