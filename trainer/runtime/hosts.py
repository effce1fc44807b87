"""Where this trainer process stands among the hosts of a multi-host run (a JobSet).

The operator runs a multi-host introduction (a multi-host TPU slice, or ``gpu.nodes`` > 1) as
a JobSet of one pod per host and tells each pod its place through the environment
(``mutask.contract``): ``ENV_HOST_INDEX`` (0..hosts-1, the pod's completion index),
``ENV_HOSTS`` and ``ENV_ATTEMPT`` (one start of the whole set, the same on every host, new
after each restart). Unset: a single host. Host ``h`` of ``H`` with ``n`` local workers (chips,
or one process) runs workers ``h*n .. h*n+n-1`` of ``H*n`` (the ``Worker`` ranks of
:mod:`mutask.trainer.iteration.exchange`); worker 0, on host 0, is the lead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mutask.contract import ENV_ATTEMPT, ENV_HOST_INDEX, ENV_HOSTS
from mutask.trainer.errors import FieldError


class HostsError(FieldError):
    """The multi-host environment is inconsistent (a bad pod spec): exit 2, naming it."""


@dataclass(frozen=True)
class Hosts:
    """This host's ``index`` of ``count``; ``attempt``: the set's start (None: one host)."""

    index: int = 0
    count: int = 1
    attempt: str | None = None

    def place(self, local: int = 0, local_count: int = 1) -> tuple[int, int]:
        """(rank, count) among all workers of local worker ``local`` of ``local_count``."""
        return self.index * local_count + local, self.count * local_count


def hosts_from_env(env: Mapping[str, str]) -> Hosts:
    """The host's place from the environment the operator's JobSet sets (see module doc)."""
    raw_count = env.get(ENV_HOSTS, "").strip()
    if not raw_count:
        return Hosts()
    count = _integer(ENV_HOSTS, raw_count)
    if count < 1:
        raise HostsError(ENV_HOSTS, raw_count, "must be at least 1")
    index = _integer(ENV_HOST_INDEX, env.get(ENV_HOST_INDEX, "0").strip() or "0")
    if not 0 <= index < count:
        raise HostsError(ENV_HOST_INDEX, index, f"must be in 0..{count - 1} ({ENV_HOSTS}={count})")
    attempt = env.get(ENV_ATTEMPT, "").strip()
    if count > 1 and not attempt:
        raise HostsError(ENV_ATTEMPT, attempt, f"required when {ENV_HOSTS} > 1 (the set's start)")
    return Hosts(index, count, attempt or None)


def _integer(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise HostsError(name, raw, "must be an integer") from None
