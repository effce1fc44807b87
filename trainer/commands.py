"""What `mutask demo|show|evaluate|verify|export|gc|serve` do (parsing and dispatch: cli.py;
`introduce`: run.py).

Every command reads the store through one damage scan (:mod:`mutask.trainer.store.damage`):
damaged tasks are listed as such and left out, the others are worked on. `verify` also
reports tasks whose manifest is missing while others use their components, and exits 1 when
anything is damaged, missing or changed; `evaluate` exits 1 when a task it was asked for
could not be evaluated. Unknown task names are bad input (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mutask.contract import ExitCode
from mutask.trainer.config import ConfigError
from mutask.trainer.data import DatasetError
from mutask.trainer.demo.summary import system_table, task_rows
from mutask.trainer.errors import NotPublished
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.verify import Verification, damaged
from mutask.trainer.runtime.device import precision_dtype, select_device
from mutask.trainer.store.damage import StoreScan, require_healthy
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.objects import StoreDamaged
from mutask.trainer.store.system_store import SystemStore, system_from_manifests
from mutask.trainer.store.uri import parse_store_uri


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


def _engine(args: argparse.Namespace, store: str, quiet: bool = False, **kw: Any) -> Engine:
    opened = SystemStore.open(store)
    device = select_device(getattr(args, "device", "auto"))
    return Engine(opened, device, progress_bars=not quiet, **kw)


def _named(found: StoreScan, tasks: Sequence[str]) -> list[str]:
    """``tasks`` (every published one when empty); NotPublished for an unknown name."""
    known = sorted({*found.documents, *found.damaged})
    for task in tasks:
        if task not in known:
            raise NotPublished(task, found.uri, known)
    return list(tasks) or known


def cmd_demo(args: argparse.Namespace) -> int:
    from mutask.trainer.demo.demo import run_demo

    where = parse_store_uri(args.store)  # before --fresh deletes anything
    if args.fresh and where.scheme != "file":
        raise ConfigError("--fresh", args.store, "only deletes a local store folder")
    return run_demo(args)


def cmd_show(args: argparse.Namespace) -> int:
    store = SystemStore.open(args.store)
    found = store.scan()
    if not found.manifests and not found.damaged:
        print(
            f"{store.uri}: empty store (run `mutask demo` or `mutask introduce "
            "--bootstrap-root ...`)"
        )
        return ExitCode.OK
    system = system_from_manifests(found.manifests) if found.manifests else None
    rows = task_rows(system, found.manifests) if system else []
    if args.json:
        print(
            dump(
                {
                    "store": store.uri,
                    "tasks": rows,
                    "damaged": {t: found.problems(t) for t in sorted(found.damaged)},
                    "missing": {t: sorted(u) for t, u in sorted(found.missing.items())},
                    "components": len(system.components) if system else 0,
                    "total_params": sum(c.num_params for c in system.components.values())
                    if system
                    else 0,
                }
            )
        )
    else:
        if system is not None:
            print(system_table(system, found.manifests))
        for line in found.summary():
            print(line)
    return ExitCode.OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mutask.trainer.config import DatasetConfig
    from mutask.trainer.evolution import Path
    from mutask.trainer.iteration.verify import split_accuracy

    engine = _engine(args, args.store, quiet=True)
    found = engine.store.scan()
    tasks = _named(found, args.tasks)
    if not args.tasks:
        tasks = [t for t in tasks if t in found.damaged or found.documents[t].get("dataset")]
    pool = engine.load(args.seed)[2] if found.manifests else None
    failed = []
    for task in tasks:
        try:
            m = require_healthy(found, task)
            if not m.get("dataset"):
                raise ConfigError("tasks", task, "has no dataset to evaluate on (pretrained root)")
            assert pool is not None
            size = int(m["shape"]["image_size"])
            data = engine.data.get(task, DatasetConfig(**m["dataset"]), size)
            split = data.test if args.split == "test" else data.validation
            model = pool.model(Path.from_dict(m["path"]))
            autocast = precision_dtype(m.get("precision") or "float32")  # as it was published
            accuracy = split_accuracy(model, split, autocast)
        except (StoreDamaged, DatasetError) as err:
            failed.append(task)
            label = "DAMAGED" if isinstance(err, StoreDamaged) else "NO DATA"
            print(f"{task:30s} {label}: {err}")
            continue
        print(f"{task:30s} {args.split} accuracy {accuracy:.4f}")
    return ExitCode.FAILED if failed else ExitCode.OK


def cmd_verify(args: argparse.Namespace) -> int:
    engine = _engine(args, args.store, quiet=True)
    found = engine.store.scan()
    tasks = _named(found, args.tasks)
    checks: list[Verification] = []
    healthy = [t for t in tasks if t in found.manifests]
    if healthy:
        checks = engine.verify(healthy)
    checks += [
        damaged(t, found.problems(t), found.documents.get(t)) for t in tasks if t in found.damaged
    ]
    for v in sorted(checks, key=lambda c: c.task):
        if v.damage:
            print(f"{v.task:30s} DAMAGED  {v.damage}")
            continue
        status = "ok" if v.ok else "CHANGED"
        note = f" ({v.note})" if v.note else ""
        print(
            f"{v.task:30s} {status:8s} hashes={'ok' if v.hashes_ok else v.bad_components} "
            f"test={v.test_accuracy_now} (recorded {v.test_accuracy_recorded}"
            f"{'' if v.accuracy_compared else ', not compared here'}) "
            f"probe={v.probe_ok} precision={v.precision}{note}"
        )
    missing = {t: u for t, u in found.missing.items() if not args.tasks or set(u) & set(tasks)}
    for task, users in sorted(missing.items()):
        print(
            f"{task:30s} MISSING  {found.uri}/tasks/{task}/manifest.json is gone but "
            f"{', '.join(sorted(users))} use components it created"
        )
    ok = all(v.ok for v in checks) and not missing
    return ExitCode.OK if ok else ExitCode.FAILED


def cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path as FsPath

    from mutask.trainer.evolution import Path
    from mutask.trainer.models import save_exported

    engine = _engine(args, args.store, quiet=True)
    found = engine.store.scan()
    _named(found, [args.task])
    m = require_healthy(found, args.task)
    _, _, pool = engine.load(args.seed)
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
    if not args.grace_seconds >= 0:
        raise ConfigError("--grace-seconds", args.grace_seconds, "must be >= 0")
    store = SystemStore.open(args.store)
    report = collect_garbage(store, grace_seconds=args.grace_seconds, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {len(report.deleted)} blob(s), {report.bytes_freed:,} bytes; kept "
        f"{report.kept} referenced, {len(report.too_young)} too young; "
        f"{len(report.debris)} leftover file(s), {len(report.leases)} stale lease(s)"
    )
    if report.blocked_by:
        print(
            "mutask: error: no blob deleted while a manifest is unreadable (what it "
            f"references is unknown): {'; '.join(report.blocked_by)}",
            file=sys.stderr,
        )
        return ExitCode.BAD_INPUT
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
