"""One batch window's forward pass: several tasks' rows, their common frozen prefixes computed once.

Every component of a published path is frozen, so at serving time a task's whole path is its
frozen prefix. The window's rows are grouped by task and the groups sorted by path (component
ids, lexicographically), which makes the rows of all tasks that start with a given prefix
one contiguous span. :class:`WindowTrie` is the lockstep trainer's
:class:`~mutask.trainer.training.prefix.PrefixTrie` (same kept nodes: the paths and their
branch points, same cache) with that span per node: each node's components run once, on the
rows of every task below it, and each task finally takes its own rows of its path's output.
With one task in the window this is exactly that task's own forward pass on its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mutask.trainer.serving.catalog import ServedTask
from mutask.trainer.training.candidate import mixed_precision
from mutask.trainer.training.prefix import Layer, Prefix, PrefixTrie


class WindowTrie(PrefixTrie):
    """A :class:`PrefixTrie` over an input whose rows belong to different prefixes."""

    def __init__(self, prefixes: Sequence[Prefix], rows: Sequence[slice]) -> None:
        super().__init__(prefixes)
        self.spans: dict[Prefix, tuple[int, int]] = {}
        for node in self.keep:
            below = [r for p, r in zip(prefixes, rows, strict=True) if p[: len(node)] == node]
            lo, hi = min(r.start for r in below), max(r.stop for r in below)
            if sum(r.stop - r.start for r in below) != hi - lo:
                raise ValueError(f"rows of the paths below {node} are not contiguous: sort them")
            self.spans[node] = (lo, hi)

    def activation_rows(
        self, prefix: Prefix, layers: Sequence[Layer], x: torch.Tensor, rows: slice
    ) -> torch.Tensor:
        """``layers[len(prefix)-1](... layers[0](x))`` for ``x[rows]``, each kept node along
        ``prefix`` computed once on the span of rows below it (and cached)."""
        depth, h, lo = 0, x, 0
        for n in range(len(prefix), 0, -1):
            hit = self.cache.get(prefix[:n])
            if hit is not None:
                depth, h, lo = n, hit, self.spans[prefix[:n]][0]
                break
        for n in range(depth + 1, len(prefix) + 1):
            node = prefix[:n]
            if node not in self.keep:
                continue
            start, stop = self.spans[node]
            h = h[start - lo : stop - lo]
            for i in range(depth, n):
                h = layers[i](h)
            self.cache[node] = h
            depth, lo = n, start
        return h[rows.start - lo : rows.stop - lo]


@dataclass(frozen=True)
class Group:
    """A task's rows in a window (its requests' images, concatenated)."""

    task: ServedTask
    images: torch.Tensor


def forward_window(
    groups: Sequence[Group],
    device: torch.device,
    autocast: torch.dtype | None = None,
    share: bool = True,
) -> list[torch.Tensor]:
    """Float32 logits (on the CPU) of each group, in order. ``share`` computes common prefixes
    once across the groups; without it each task runs its own forward (the ablation)."""
    order = sorted(range(len(groups)), key=lambda i: groups[i].task.component_ids)
    sizes = [groups[i].images.shape[0] for i in order]
    bounds = [0]
    for n in sizes:
        bounds.append(bounds[-1] + n)
    rows = [slice(bounds[k], bounds[k + 1]) for k in range(len(order))]
    out: list[torch.Tensor | None] = [None] * len(groups)
    with torch.inference_mode(), mixed_precision(device, autocast):
        x = torch.cat([groups[i].images for i in order]).to(device, non_blocking=True)
        if share:
            trie = WindowTrie([groups[i].task.component_ids for i in order], rows)
        for k, i in enumerate(order):
            task = groups[i].task
            if share:
                logits = trie.activation_rows(task.component_ids, task.modules, x, rows[k])
            else:
                logits = task.forward(x[rows[k]])
            out[i] = logits.float().cpu()
    return [t for t in out if t is not None]
