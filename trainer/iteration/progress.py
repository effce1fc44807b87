"""Where a task iteration reports progress: event sinks (metrics, Kubernetes status), log
lines and terminal progress bars."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Never

from tqdm.auto import tqdm

ProgressSink = Callable[[Mapping[str, object]], None]


@dataclass
class Progress:
    """Fans progress events out to ``sinks``; ``log`` prints lines; ``bars`` shows tqdm."""

    sinks: Sequence[ProgressSink] = ()
    bars: bool = True
    log: Callable[[str], None] = field(default=print)

    def emit(self, **event: object) -> None:
        for sink in self.sinks:
            sink(event)

    def bar(self, total: int, desc: str) -> tqdm[Never]:
        """A progress bar over ``total`` steps (silent when bars are off)."""
        return tqdm(
            total=total,
            unit="step",
            leave=True,
            desc=desc,
            disable=not self.bars,
            dynamic_ncols=True,
        )
