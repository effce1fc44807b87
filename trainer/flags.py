"""Flags several `mutask` subcommands share (dataset, budget, root model) and the configs
they build: the ``--budget`` presets with single fields overridden, the root model, and
the config `mutask bootstrap` trains a root with."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

from mutask.trainer.config import (
    BUDGETS,
    BudgetConfig,
    ConfigError,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
)


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=DatasetConfig.source,
        help="digits | mnist | fashion_mnist, or a path, file:// or gs:// URI of an .npz, an idx "
        "folder, an image folder (ROOT/<class>/<image>, optionally under train/ val/ test/), "
        "WebDataset shards ('.../train-{000..031}.tar') or a Hugging Face dataset "
        "(save_to_disk folder or Parquet) (default: %(default)s)",
    )
    p.add_argument("--labels", help="comma-separated label subset, e.g. 0,1,2 (default: all)")
    p.add_argument(
        "--transform",
        help="rot90 | rot180 | flip_lr | flip_ud | transpose | invert (default: none)",
    )


# (flag, BudgetConfig field, type, help) of the flags that override one field of --budget
BUDGET_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--generations", "generations", int, "generations G"),
    ("--candidates", "candidates", int, "candidates per generation K"),
    ("--rounds", "validation_rounds", int, "validation rounds V of the longest-trained candidate"),
    (
        "--steps",
        "steps_per_round",
        int,
        "training steps per round N; 0: from --epochs and the data",
    ),
    ("--epochs", "epochs", float, "the task's budget in passes over its training data"),
    ("--batch-size", "batch_size", int, "training batch size"),
)


def add_budget(p: argparse.ArgumentParser) -> None:
    default = BUDGETS["default"]
    p.add_argument(
        "--budget",
        choices=sorted(BUDGETS),
        default="default",
        help="budget preset (README: Budgets); the flags below override single fields",
    )
    for flag, name, kind, text in BUDGET_FLAGS:
        shown = getattr(default, name)
        p.add_argument(
            flag,
            type=kind,
            help=f"{text} (default: the preset's; {shown} in the default preset)",
        )
    p.add_argument(
        "--even-split",
        action="store_true",
        help="plain µ2Net: every candidate trains every round, no final phase (default: "
        "successive halving, and the rounds it saves train the retained path further)",
    )


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        help=f"root ViT preset, when bootstrapping (default: {ModelConfig.preset}; with a "
        "root in the store: the root's, and a different value is refused)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        help=f"root image size, when bootstrapping (default: {ModelConfig.image_size}, the "
        "bootstrap data's own size; with a root in the store: the root's, and a different "
        "value is refused)",
    )
    p.add_argument(
        "--max-epochs",
        type=float,
        default=ModelConfig.max_epochs,
        help="a root trained from scratch stops when validation stops improving, at the "
        "latest after this many epochs (default: %(default)s)",
    )
    p.add_argument(
        "--weights",
        help="pretrained root weights (.safetensors/.npz), only when bootstrapping an empty "
        "store (default: train the root from scratch on the task)",
    )


def model_from_args(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        preset=args.preset or ModelConfig.preset,
        image_size=ModelConfig.image_size if args.image_size is None else args.image_size,
        weights=args.weights,
        max_epochs=args.max_epochs,
    )


def bootstrap_config(args: argparse.Namespace) -> IntroduceConfig:
    """The config `mutask bootstrap` trains the root with."""
    labels = labels_from(args.labels)
    task = args.task or data_name(args.dataset)
    return IntroduceConfig(
        task=task,
        dataset=DatasetConfig(source=args.dataset, labels=labels, transform=args.transform),
        store=args.store,
        budget=replace(BudgetConfig(), batch_size=args.batch_size),
        model=model_from_args(args),
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        workers=args.workers,
        bootstrap_root=True,
    ).validate()


def data_name(source: str) -> str:
    """A task name for a dataset source: its file stem, lowercased, safe characters only."""
    stem = Path(source.rstrip("/")).name.split(".")[0].lower()
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem).strip("-_.")
    return name[:63] or "root-data"


def labels_from(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError as err:
        raise ConfigError("--labels", text, "must be comma-separated ints") from err


def budget_from_args(args: argparse.Namespace) -> BudgetConfig:
    """The --budget preset with every budget flag given applied on top."""
    budget = BUDGETS[args.budget]
    given = {
        name: getattr(args, flag[2:].replace("-", "_"))
        for flag, name, _, _ in BUDGET_FLAGS
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    if args.even_split:
        given.update(halving=False, final_training=False)
    return replace(budget, **given)
