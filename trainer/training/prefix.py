"""Shared frozen prefixes: several paths' leading frozen components computed once per input.

Paths are named by their prefix, the ids of their leading frozen components. Prefixes form
a trie: two paths that start with the same components share that part's activation, even
where they diverge later. Only the requested prefixes themselves and the branch points
between them are kept, for one input (``clear`` drops them). Used by lockstep training (a
generation's candidates on one batch) and meant for serving (several tasks on one request).
``after_layer`` is called after each layer computed (the device's step boundary: on XLA
each frozen layer is then its own graph, whichever prefixes share it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Prefix = tuple[str, ...]
Layer = Callable[[torch.Tensor], torch.Tensor]


class PrefixTrie:
    """Caches the activations of the given prefixes and their common parts for one input."""

    def __init__(
        self, prefixes: Sequence[Prefix], after_layer: Callable[[], None] | None = None
    ) -> None:
        keep: set[Prefix] = set(prefixes)
        for i, a in enumerate(prefixes):
            for b in prefixes[i + 1 :]:
                n = 0
                while n < min(len(a), len(b)) and a[n] == b[n]:
                    n += 1
                keep.add(a[:n])
        self.keep = keep
        self.after_layer = after_layer
        self.cache: dict[Prefix, torch.Tensor] = {}

    def clear(self) -> None:
        """Forget the cached activations (before the next input)."""
        self.cache.clear()

    def activation(self, prefix: Prefix, layers: Sequence[Layer], x: torch.Tensor) -> torch.Tensor:
        """``layers[len(prefix)-1](... layers[0](x))``, where ``layers[i]`` is the module of
        component ``prefix[i]``, reusing (and filling) the cache of shared parts."""
        start, h = 0, x
        for n in range(len(prefix), 0, -1):
            hit = self.cache.get(prefix[:n])
            if hit is not None:
                start, h = n, hit
                break
        for i in range(start, len(prefix)):
            h = layers[i](h)
            if self.after_layer is not None:
                self.after_layer()
            if prefix[: i + 1] in self.keep:
                self.cache[prefix[: i + 1]] = h
        return h
