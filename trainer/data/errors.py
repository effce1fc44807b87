"""The one exception every data-loading problem raises: ``DatasetError``."""

from __future__ import annotations

from mutask.trainer.errors import BadInput


class DatasetError(BadInput):
    """A task's data cannot be loaded as configured; names the task, field and value.

    The message reads ``task 'mnist-even': dataset.labels=[0, 12]: label 12 is out of
    range (source 'mnist' has 10 classes)``.
    """

    def __init__(self, task: str, field: str, value: object, why: str) -> None:
        super().__init__(f"task {task!r}: {field}={value!r}: {why}")
        self.task = task
        self.field = field
        self.value = value
        self.why = why

    def __reduce__(self) -> tuple[type[DatasetError], tuple[str, str, object, str]]:
        return type(self), (self.task, self.field, self.value, self.why)
