"""The `mutask` command line: argument parsing and dispatch, nothing else.

Subcommands: demo, introduce, show, evaluate, verify, export, gc, serve, operator. `introduce`
runs :func:`mutask.trainer.run.run_introduction` (a trainer pod's main), `operator` the
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
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.errors import describe, exit_code_of
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
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
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
    p.add_argument(
        "--dataset",
        default=DatasetConfig.source,
        help="digits | mnist | fashion_mnist, or a path, file:// or gs:// URI of an .npz, an idx "
        "folder, an image folder (ROOT/<class>/<image>, optionally under train/ val/ test/), "
        "WebDataset shards ('.../train-{000..031}.tar') or a Hugging Face dataset "
        "(save_to_disk folder or Parquet)",
    )
    p.add_argument("--labels", help="comma-separated label subset, e.g. 0,1,2 (default: all)")
    p.add_argument(
        "--transform",
        help="rot90 | rot180 | flip_lr | flip_ud | transpose | invert (default: none)",
    )
    p.add_argument("--generations", type=int, default=BudgetConfig.generations, help="generations")
    p.add_argument(
        "--candidates",
        type=int,
        default=BudgetConfig.candidates,
        help="candidates per generation",
    )
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
    p.add_argument(
        "--batch-size", type=int, default=BudgetConfig.batch_size, help="training batch size"
    )
    p.add_argument(
        "--size-scale",
        type=float,
        default=SearchConfig.size_scale,
        help="s in score = quality * s**(params/P_root); 1 = no size penalty",
    )
    p.add_argument(
        "--preset",
        help=f"root ViT preset, when bootstrapping (default: {ModelConfig.preset}; with a "
        "root in the store: the root's, and a different value is refused)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help=f"root image size, when bootstrapping (default: {ModelConfig.image_size}; with a "
        "root in the store: the root's, and a different value is refused)",
    )
    p.add_argument(
        "--weights",
        help="pretrained root weights (.safetensors/.npz), only when bootstrapping an empty "
        "store (default: train the root from scratch on the task)",
    )
    p.add_argument(
        "--bootstrap-root",
        action="store_true",
        help="create the root model first if the store has none",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the no-forgetting check")
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
        labels = None
        if args.labels is not None:
            try:
                labels = [int(x) for x in args.labels.split(",")]
            except ValueError as err:
                raise ConfigError(
                    "--labels", args.labels, "must be comma-separated integers (omit for all)"
                ) from err
        cfg = IntroduceConfig(
            task=args.task,
            dataset=DatasetConfig(source=args.dataset, labels=labels, transform=args.transform),
            budget=BudgetConfig(
                generations=args.generations,
                candidates=args.candidates,
                validation_rounds=args.rounds,
                steps_per_round=args.steps,
                batch_size=args.batch_size,
            ),
            search=SearchConfig(size_scale=args.size_scale),
            model=ModelConfig(
                preset=args.preset or ModelConfig.preset,
                image_size=ModelConfig.image_size if args.image_size is None else args.image_size,
                weights=args.weights,
            ),
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
        from mutask.trainer import commands

        code: int = commands.COMMANDS[args.command](args)
        return code
    except Exception as err:
        return report(err, debug=debug_requested(args.debug))
    except KeyboardInterrupt as err:
        return report(err, debug=debug_requested(args.debug))


if __name__ == "__main__":
    raise SystemExit(main())
