"""The `mutask` command line: argument parsing and dispatch, nothing else.

Subcommands: demo, introduce, bootstrap, show, evaluate, verify, export, gc, serve, operator.
`introduce` runs :func:`mutask.trainer.run.run_introduction` (a trainer pod's main),
`bootstrap` :func:`mutask.trainer.run.run_bootstrap`, `operator` the
Kubernetes operator, the others :mod:`mutask.trainer.commands`. Heavy modules (torch, kopf)
are imported only once a command runs, so `mutask --help` is instant and `mutask operator`
runs in the operator image, which has no torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mutask.trainer.config import (
    BudgetConfig,
    ConfigError,
    DatasetConfig,
    IntroduceConfig,
    SearchConfig,
)
from mutask.trainer.errors import describe, exit_code_of
from mutask.trainer.flags import (
    add_budget,
    add_dataset,
    add_model,
    bootstrap_config,
    budget_from_args,
    labels_from,
    model_from_args,
)
from mutask.trainer.serving.flags import add_serve_parser

DEFAULT_STORE = IntroduceConfig.__dataclass_fields__["store"].default
DEBUG_ENV = "MUTASK_DEBUG"
DEBUG_HELP = f"print the traceback of an error too (also: {DEBUG_ENV}=1)"
# flags that override a --config file's value whenever they are given (any value, 0 too)
OVERRIDES = ("store", "seed", "device", "precision", "metrics_port", "workers")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        hidden = action.default is None or action.default is False  # 0 is shown
        if "default" in text or hidden or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def _add_common(p: argparse.ArgumentParser, store: bool = True) -> None:
    if store:
        p.add_argument(
            "--store",
            default=DEFAULT_STORE,
            help="system storage: a folder, file:// or gs://bucket/prefix",
        )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] | xla")


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help="candidates of a generation trained at once on a CPU, ignored on GPU/TPU "
        "(default: one per available core for small models; results are the same for any "
        "value)",
    )


def _introduce_parser(sub: Any) -> None:
    p = sub.add_parser(
        "introduce",
        help="run one task iteration (what trainer pods run)",
        description="Introduce a task into the system, or revisit it: evolve "
        "candidates, train them, publish the best path, verify no forgetting.",
        formatter_class=_Formatter,
    )
    p.add_argument(
        "--config",
        type=Path,
        help="JSON config file (IntroduceConfig); the task, dataset, budget, search and "
        "model flags below are then ignored; --store, --seed, --device, --precision, "
        "--metrics-port and --workers override the file's values when given",
    )
    p.add_argument(
        "--store",
        help=f"system storage: a folder, file:// or gs://bucket/prefix (default: "
        f"./{DEFAULT_STORE}, or the config file's)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: 0, or the config file's)")
    p.add_argument(
        "--device",
        help="auto | cpu | cuda[:N] | xla (default: auto, or the config file's)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        help="auto: bfloat16 autocast on TPUs and bf16-capable GPUs, else float32 "
        "(default: auto, or the config file's)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on this port (default: none, or the config file's)",
    )
    _add_workers(p)
    p.add_argument("--task", help="task name, e.g. digits or private:my-task")
    add_dataset(p)
    add_budget(p)
    p.add_argument(
        "--size-scale",
        type=float,
        default=SearchConfig.size_scale,
        help="s in score = quality * s**(params/P_root); 1 = no size penalty",
    )
    add_model(p)
    p.add_argument(
        "--bootstrap-root",
        action="store_true",
        help="create the root model first if the store has none (see `mutask bootstrap`)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the no-forgetting check")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _bootstrap_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bootstrap",
        help="create the root model of an empty store",
        description="Create the root ViT: train it from scratch on a dataset until its "
        "validation accuracy stops improving (progress shown), or load pretrained weights. "
        "Tasks are then added with `mutask introduce`.",
        formatter_class=_Formatter,
    )
    _add_common(p)
    p.add_argument(
        "--precision",
        choices=["auto", "float32", "bfloat16"],
        default="auto",
        help="auto: bfloat16 autocast on TPUs and bf16-capable GPUs, else float32",
    )
    _add_workers(p)
    p.add_argument(
        "--task",
        help="a name for the root's training data in the manifest (default: the dataset's)",
    )
    add_dataset(p)
    add_model(p)
    p.add_argument(
        "--batch-size", type=int, default=BudgetConfig.batch_size, help="training batch size"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mutask",
        description="Grow one multitask ViT that learns new tasks without forgetting (µ2Net).",
        epilog="Errors print one line and exit 2 (bad input), 3 (fenced off), 75 (preempted) "
        "or 1; --debug (or MUTASK_DEBUG=1) adds the traceback.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="the main job: bootstrap a root, introduce tasks, verify",
        description="Bootstrap a root on built-in data, introduce several tasks, "
        "revisit one, verify no forgetting, print a table and write a report.",
        formatter_class=_Formatter,
    )
    _add_common(p, store=False)
    p.add_argument("--store", default="mutask-demo/store", help="the demo's system storage")
    p.add_argument("--report", type=Path, default=Path("mutask-demo/report"), help="report folder")
    p.add_argument("--quick", action="store_true", help="a much smaller budget (tests, smoke)")
    p.add_argument("--fresh", action="store_true", help="delete an existing demo store first")
    _add_workers(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    _introduce_parser(sub)
    _bootstrap_parser(sub)

    p = sub.add_parser(
        "show", help="tasks, paths, shared components and parameters", formatter_class=_Formatter
    )
    p.add_argument("--store", default=DEFAULT_STORE, help="system storage")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser(
        "evaluate", help="test accuracy of published tasks", formatter_class=_Formatter
    )
    _add_common(p)
    p.add_argument("tasks", nargs="*", help="tasks to evaluate (default: all)")
    p.add_argument("--split", default="test", choices=["test", "validation"], help="split")

    p = sub.add_parser(
        "verify", help="re-check that no published task has changed", formatter_class=_Formatter
    )
    _add_common(p)
    p.add_argument("tasks", nargs="*", help="tasks to verify (default: all)")

    p = sub.add_parser(
        "export",
        help="write one task's path as a standalone model file",
        formatter_class=_Formatter,
    )
    _add_common(p)
    p.add_argument("task", help="the task to export")
    p.add_argument("--out", type=Path, help="output .safetensors (default: TASK.safetensors)")

    p = sub.add_parser(
        "gc", help="delete blobs no published manifest references", formatter_class=_Formatter
    )
    p.add_argument("--store", default=DEFAULT_STORE, help="system storage")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    p.add_argument(
        "--grace-seconds",
        type=float,
        default=3600.0,
        help="never delete blobs younger than this",
    )

    add_serve_parser(sub, _Formatter, str(DEFAULT_STORE))

    for command in sub.choices.values():  # --debug after the command too
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )

    p = sub.add_parser("operator", help="run the Kubernetes operator (kopf)", add_help=False)
    p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def config_from_args(args: argparse.Namespace) -> IntroduceConfig:
    """The introduce config: the --config file's, or the flags'; then every override given."""
    if args.config is not None:
        try:
            text = args.config.read_text()
        except OSError as err:
            raise ConfigError("--config", str(args.config), f"cannot read: {err}") from err
        cfg = IntroduceConfig.from_json(text)
    else:
        if not args.task:
            raise ConfigError("--task", None, "required (or give --config FILE)")
        cfg = IntroduceConfig(
            task=args.task,
            dataset=DatasetConfig(
                source=args.dataset, labels=labels_from(args.labels), transform=args.transform
            ),
            budget=budget_from_args(args),
            search=SearchConfig(size_scale=args.size_scale),
            model=model_from_args(args),
            bootstrap_root=args.bootstrap_root,
        )
    given = {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}
    return replace(cfg, **given).validate()


def explicit_model(args: argparse.Namespace) -> tuple[str, ...]:
    """The model fields the user gave: all of a --config file's, else the flags given."""
    if args.config is not None:
        return ("preset", "image_size", "weights")
    return tuple(f for f in ("preset", "image_size", "weights") if getattr(args, f) is not None)


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` given, or ``$MUTASK_DEBUG`` set to a true value."""
    return flag or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes", "on")


def report(err: BaseException, *, debug: bool = False) -> int:
    """Print ``err`` as ``mutask: error: ...`` (its traceback first when ``debug``); its
    exit code (see :mod:`mutask.trainer.errors`)."""
    if debug:
        traceback.print_exception(err, file=sys.stderr)
    print(f"mutask: error: {describe(err)}", file=sys.stderr)
    return exit_code_of(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr and an exit code (see
    :mod:`mutask.trainer.errors`), with the traceback only under --debug / MUTASK_DEBUG=1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["operator"]:
        from mutask.operator.main import run as run_operator

        return run_operator(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        if args.command == "introduce":
            from mutask.trainer.run import run_introduction

            cfg = config_from_args(args)
            return run_introduction(
                cfg,
                quiet=args.quiet,
                verify=not args.no_verify,
                explicit_model=explicit_model(args),
            )
        if args.command == "bootstrap":
            from mutask.trainer.run import run_bootstrap

            return run_bootstrap(bootstrap_config(args), quiet=args.quiet)
        from mutask.trainer import commands

        code: int = commands.COMMANDS[args.command](args)
        return code
    except Exception as err:
        return report(err, debug=debug_requested(args.debug))
    except KeyboardInterrupt as err:
        return report(err, debug=debug_requested(args.debug))


if __name__ == "__main__":
    raise SystemExit(main())
