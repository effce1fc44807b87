"""The trainer's configuration as code: frozen dataclasses, their JSON form and validation.

`mutask introduce --config FILE` reads exactly this JSON (the operator renders it into a
ConfigMap). Every field has a default except the task and its dataset; every bad value is
reported as ``ConfigError`` naming the dotted field path and the value.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mutask.trainer.errors import ConfigError as ConfigError
from mutask.trainer.limits import (
    POPULATION_CAP_MAX,
    SEED_MAX,
    WORKERS_MAX,
    check_budget,
    check_dataset,
    check_int,
    check_model,
)

TASK_NAME = re.compile(r"^(private:)?[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$")


def check_task_name(name: str, field_path: str = "task") -> str:
    """Validate a task name (lowercase, digits, ``_.-``, optional ``private:`` prefix)."""
    if not isinstance(name, str) or not TASK_NAME.match(name):
        raise ConfigError(
            field_path,
            name,
            "a task name is 1-63 of [a-z0-9_.-], starting and ending alphanumeric, "
            "optionally prefixed by 'private:'",
        )
    return name


@dataclass(frozen=True)
class DatasetConfig:
    """Where a task's images come from and how they are split and relabelled.

    ``source``: ``digits`` | ``mnist`` | ``fashion_mnist`` (built in), or a path / ``file://``
    / ``gs://`` URI of an ``.npz`` file (``x_train``/``y_train``, optionally ``x_val``/
    ``y_val`` and ``x_test``/``y_test``, or ``images``/``labels``), a folder of idx(.gz)
    files, an image folder (``ROOT/<class>/<image>`` or ``ROOT/<split>/<class>/<image>``),
    WebDataset tar shards (``.../train-{000..031}.tar``, a ``.tar`` or a folder of them) or a
    Hugging Face dataset (a ``save_to_disk`` folder, or Parquet files); see
    ``mutask.trainer.data.sources``. Splits use the TFDS slice syntax over the source's base
    splits: ``train``, ``test``, ``train[:95%]``, ``train[95%:]``, ``test[:1000]``. ``auto``
    (the default for train and validation) uses the source's own ``validation`` split with
    all of ``train`` when it has one, else ``train[:90%]`` / ``train[90%:]``.
    """

    source: str = "digits"
    train_split: str = "auto"
    validation_split: str = "auto"
    test_split: str = "test"
    labels: list[int] | None = None
    label_map: dict[str, int] | None = None
    transform: str | None = None
    max_train_examples: int | None = None


@dataclass(frozen=True)
class BudgetConfig:
    """How much evolution and training one task iteration gets (spec: G, K, V, N).

    The task's budget is G * K * V rounds of N steps of ``batch_size`` examples (the even
    split of plain µ2Net). ``steps_per_round`` = 0 derives N from the data: the budget is
    then ``epochs`` passes over the task's training set (an epoch counted as at most
    ``EPOCH_CAP`` examples), at least ``MIN_STEPS_PER_ROUND`` steps a round. With
    ``halving`` only the better half of a generation's candidates trains on after each
    round (the winner still gets all V rounds); with ``final_training`` the rounds halving
    saved train the retained path further. See ``BUDGETS`` for the presets.
    """

    generations: int = 2
    candidates: int = 8
    validation_rounds: int = 4
    steps_per_round: int = 0
    epochs: float = 4.0
    halving: bool = True
    final_training: bool = True
    batch_size: int = 64
    max_validation_examples: int = 10_000


EPOCH_CAP = 50_000  # an epoch of a large training set counts as this many examples
MIN_STEPS_PER_ROUND = 10

# `--budget NAME`: every field of a preset can still be overridden on its own.
BUDGETS: dict[str, BudgetConfig] = {
    "quick": BudgetConfig(generations=1, candidates=4, validation_rounds=3, epochs=2.0),
    "default": BudgetConfig(),
    "thorough": BudgetConfig(generations=3, candidates=8, validation_rounds=4, epochs=6.0),
}


@dataclass(frozen=True)
class SearchConfig:
    """Search-space and scoring options of µ2Net."""

    size_scale: float = 1.0
    flops_scale: bool = False
    per_action_mu: bool = False
    adapters: bool = True
    tune_depth: bool = True
    population_cap: int = 16


@dataclass(frozen=True)
class ModelConfig:
    """The root model: an architecture preset, image size, optional pretrained weights.

    ``image_size`` = 0 takes the bootstrap data's own size (rounded up to a multiple of the
    preset's patch). A root trained from scratch trains until its validation accuracy
    stops improving, at most ``max_epochs`` passes over its training set.
    """

    preset: str = "mu-tiny"
    image_size: int = 0
    weights: str | None = None
    max_epochs: float = 12.0


@dataclass(frozen=True)
class IntroduceConfig:
    """One task iteration: introduce (or revisit) ``task`` into the system at ``store``."""

    task: str
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    store: str = "mutask-store"
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    metrics_port: int | None = None
    workers: int | None = None  # candidates trained at once; None = one per free CPU core
    agent_id: str | None = None
    bootstrap_root: bool = False

    def validate(self) -> IntroduceConfig:
        """Check every field; raise ConfigError naming the first bad one."""
        check_task_name(self.task)
        check_budget(self.budget)
        s = self.search
        scale = s.size_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 1:
            raise ConfigError("search.size_scale", s.size_scale, "must be in (0, 1]")
        check_int("search.population_cap", s.population_cap, 1, POPULATION_CAP_MAX)
        if not isinstance(self.store, str) or not self.store.strip():
            raise ConfigError("store", self.store, "a folder, file:///path or gs://bucket/prefix")
        check_int("seed", self.seed, 0, SEED_MAX)
        if not isinstance(self.device, str) or (
            self.device not in ("auto", "cpu", "cuda", "xla")
            and not re.match(r"^cuda:[0-9]{1,3}$", self.device)
        ):
            raise ConfigError("device", self.device, "must be auto, cpu, cuda[:N] or xla")
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ConfigError("precision", self.precision, "must be auto, float32 or bfloat16")
        if self.metrics_port is not None:
            check_int("metrics_port", self.metrics_port, 0, 65535)
        if self.workers is not None:
            check_int("workers", self.workers, 1, WORKERS_MAX)
        check_model(self.model)
        check_dataset(self.dataset)
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (what `mutask introduce --config` reads)."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntroduceConfig:
        """Build from a JSON object, rejecting unknown keys and wrong types by field name."""
        return _build(cls, data, "").validate()

    @classmethod
    def from_json(cls, text: str) -> IntroduceConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError("<config>", text[:40], f"not valid JSON: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError("<config>", data, "must be a JSON object")
        return cls.from_dict(data)


T = TypeVar("T")


def _build(cls: type[T], data: Any, prefix: str) -> T:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "<config>", data, "must be an object")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in data:
        if key not in known:
            raise ConfigError(
                f"{prefix}{key}", data[key], f"unknown field (known: {sorted(known)})"
            )
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(prefix.rstrip(".") or "<config>", data, str(err)) from err


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path + ".")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(path, value, "must not be null")
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(path, value, "must be a list")
        (item,) = typing.get_args(hint)
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, value, "must be an object")
        _, vt = typing.get_args(hint)
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, value, "must be an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "must be a string")
        return value
    return value
