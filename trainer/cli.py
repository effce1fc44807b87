"""The `mutask` command line: demo, introduce, bootstrap, show, evaluate, verify, export, gc,
operator. Heavy modules (torch, kopf) are imported inside each command, so `mutask --help`
is instant and `mutask operator` runs in the operator image, which has no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mutask.contract import ExitCode
from mutask.trainer.config import (
    BudgetConfig,
    ConfigError,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)

DEFAULT_STORE = "mutask-store"


def _add_common(p: argparse.ArgumentParser, store: bool = True) -> None:
    if store:
        p.add_argument(
            "--store",
            default=DEFAULT_STORE,
            help="system storage: a folder, file:// or gs://bucket/prefix "
            f"(default: ./{DEFAULT_STORE})",
        )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | xla (default: auto)")


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help="candidates of a generation trained at once on a CPU, ignored on GPU/TPU "
        "(default: one per "
        "available core for small models; results are the same for any value)",
    )


def _introduce_parser(sub: Any) -> None:
    p = sub.add_parser(
        "introduce",
        help="run one task iteration (what trainer pods run)",
        description="Introduce a task into the system, or revisit it: evolve "
        "candidates, train them, publish the best path, verify no forgetting.",
    )
    _add_common(p)
    p.add_argument(
        "--config",
        type=Path,
        help="JSON config file (IntroduceConfig); flags "
        "below are ignored when given, except --store/--seed/--device/--workers if set",
    )
    p.add_argument("--task", help="task name, e.g. digits or private:my-task")
    p.add_argument(
        "--dataset",
        default="digits",
        help="digits | mnist | fashion_mnist | path/URI of .npz (default: digits)",
    )
    p.add_argument("--labels", help="comma-separated label subset, e.g. 0,1,2")
    p.add_argument("--transform", help="rot90 | rot180 | flip_lr | flip_ud | transpose | invert")
    p.add_argument("--generations", type=int, default=BudgetConfig.generations)
    p.add_argument("--candidates", type=int, default=BudgetConfig.candidates)
    p.add_argument(
        "--rounds",
        type=int,
        default=BudgetConfig.validation_rounds,
        help="validation rounds per candidate",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=BudgetConfig.steps_per_round,
        help="training steps per validation round",
    )
    p.add_argument("--batch-size", type=int, default=BudgetConfig.batch_size)
    p.add_argument(
        "--size-scale",
        type=float,
        default=SearchConfig.size_scale,
        help="s in score = quality * s**(params/P_root); 1 = no size penalty",
    )
    p.add_argument("--preset", default=ModelConfig.preset, help="root ViT preset (bootstrap)")
    p.add_argument("--image-size", type=int, default=ModelConfig.image_size)
    p.add_argument("--weights", help="pretrained root weights (.safetensors/.npz; bootstrap)")
    p.add_argument(
        "--bootstrap-root",
        action="store_true",
        help="create the root model first if the store has none",
    )
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    _add_workers(p)
    p.add_argument("--no-verify", action="store_true", help="skip the no-forgetting check")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mutask",
        description="Grow one multitask ViT that learns new tasks without forgetting (µ2Net).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="the main job: bootstrap a root, introduce tasks, verify",
        description="Bootstrap a root on built-in data, introduce several tasks, "
        "revisit one, verify no forgetting, print a table and write a report.",
    )
    _add_common(p, store=False)
    p.add_argument("--store", default="mutask-demo/store", help="(default: mutask-demo/store)")
    p.add_argument(
        "--report",
        type=Path,
        default=Path("mutask-demo/report"),
        help="report folder (default: mutask-demo/report)",
    )
    p.add_argument("--quick", action="store_true", help="a much smaller budget (tests, smoke)")
    p.add_argument("--fresh", action="store_true", help="delete an existing demo store first")
    _add_workers(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    _introduce_parser(sub)

    p = sub.add_parser("show", help="tasks, paths, shared components and parameters")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("evaluate", help="test accuracy of published tasks")
    _add_common(p)
    p.add_argument("tasks", nargs="*", help="tasks to evaluate (default: all)")
    p.add_argument("--split", default="test", choices=["test", "validation"])

    p = sub.add_parser("verify", help="re-check that no published task has changed")
    _add_common(p)
    p.add_argument("tasks", nargs="*", help="tasks to verify (default: all)")

    p = sub.add_parser("export", help="write one task's path as a standalone model file")
    _add_common(p)
    p.add_argument("task")
    p.add_argument("--out", type=Path, help="output .safetensors (default: TASK.safetensors)")

    p = sub.add_parser("gc", help="delete blobs no published manifest references")
    p.add_argument("--store", default=DEFAULT_STORE)
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=3600.0,
        help="never delete blobs younger than this (default: 3600)",
    )

    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def config_from_args(args: argparse.Namespace) -> IntroduceConfig:
    if args.config is not None:
        try:
            text = args.config.read_text()
        except OSError as err:
            raise ConfigError("--config", str(args.config), f"cannot read: {err}") from err
        cfg = IntroduceConfig.from_json(text)
        if args.store != DEFAULT_STORE:
            cfg.store = args.store
        if args.seed != 0:  # the help promises --seed overrides the file when given
            cfg.seed = args.seed
        if args.device != "auto":
            cfg.device = args.device
        if args.workers is not None:
            cfg.workers = args.workers
        return cfg.validate()
    if not args.task:
        raise ConfigError("--task", None, "required (or give --config FILE)")
    labels = None
    if args.labels:
        try:
            labels = [int(x) for x in args.labels.split(",")]
        except ValueError as err:
            raise ConfigError("--labels", args.labels, "must be comma-separated ints") from err
    return IntroduceConfig(
        task=args.task,
        dataset=DatasetConfig(source=args.dataset, labels=labels, transform=args.transform),
        store=args.store,
        budget=BudgetConfig(
            generations=args.generations,
            candidates=args.candidates,
            validation_rounds=args.rounds,
            steps_per_round=args.steps,
            batch_size=args.batch_size,
        ),
        search=SearchConfig(size_scale=args.size_scale),
        model=ModelConfig(preset=args.preset, image_size=args.image_size, weights=args.weights),
        seed=args.seed,
        device=args.device,
        metrics_port=args.metrics_port,
        workers=args.workers,
        bootstrap_root=args.bootstrap_root,
    ).validate()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        from mutask.operator.main import run as run_operator

        return run_operator(argv[1:])
    args = build_parser().parse_args(argv)
    from mutask.trainer import commands

    try:
        code: int = getattr(commands, f"cmd_{args.command}")(args)
        return code
    except ConfigError as err:
        print(f"mutask: error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except commands.BAD_INPUT_ERRORS as err:
        print(f"mutask: error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


if __name__ == "__main__":
    raise SystemExit(main())
