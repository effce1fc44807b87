"""One trainer worker per chip of a TPU host, started by torch-xla's PJRT launcher.

`mutask introduce` on XLA runs :func:`run_on_chips`: ``torch_xla.launch`` starts a worker per
local chip (a process per TPU chip; on XLA's CPU backend, one thread per emulated device,
``CPU_NUM_DEVICES``), and each runs the task iteration as worker ``r`` of ``n``
(:class:`~mutask.trainer.iteration.exchange.Worker`): its share of every generation's
candidates, all results merged in candidate order through the store, so the evolution is the
same for any chip count. Worker 0 is what one process would be: metrics, status, lease,
checkpoints, publishing, verification and the printed result.

SIGTERM reaches only the launcher (a container's first process): it leaves a stop file that
every worker polls at each step, so all of them stop at their next step, as one process
would. Each worker leaves its exit code in a file; the run's code is the most telling one:
bad input, fenced, preempted, failed, ok, in that order.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import traceback
import uuid
from collections.abc import Collection
from pathlib import Path
from types import FrameType

from mutask.contract import ExitCode
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.errors import MutaskError, describe, exit_code_of
from mutask.trainer.iteration.exchange import Worker
from mutask.trainer.iteration.preflight import MODEL_FIELDS
from mutask.trainer.runtime.hosts import Hosts

# Which exit code a run reports when its workers disagree (first found wins).
PRECEDENCE = (ExitCode.BAD_INPUT, ExitCode.FENCED, ExitCode.PREEMPTED, ExitCode.FAILED)


def run_on_chips(
    cfg: IntroduceConfig,
    *,
    quiet: bool = False,
    verify: bool = True,
    explicit_model: Collection[str] = MODEL_FIELDS,
    hosts: Hosts | None = None,
) -> int:
    """Run one task iteration with a worker per local chip; the run's exit code.
    ``explicit_model``: the model fields the user gave (see the preflight); ``hosts``: this
    host's place in a multi-host run (its chips are workers ``index*n ..`` of ``count*n``)."""
    import torch_xla

    with tempfile.TemporaryDirectory(prefix="mutask-chips-") as tmp:
        folder = Path(tmp)
        stop = folder / "stop"

        def on_term(signum: int, frame: FrameType | None) -> None:
            stop.touch()

        previous = signal.signal(signal.SIGTERM, on_term)
        try:
            hosts = hosts or Hosts()
            attempt = hosts.attempt or uuid.uuid4().hex[:12]  # shared by every host's chips
            args = (cfg, quiet, verify, tuple(explicit_model), str(folder), attempt, hosts)
            torch_xla.launch(_chip_worker, args=args)
        finally:
            signal.signal(signal.SIGTERM, previous)
        codes = [json.loads(p.read_text())["code"] for p in sorted(folder.glob("code-*.json"))]
    return merged_exit_code(codes)


def merged_exit_code(codes: list[int]) -> int:
    """The run's exit code from its workers' (no code at all: a worker died, failed)."""
    if not codes:
        return int(ExitCode.FAILED)
    for code in PRECEDENCE:
        if code in codes:
            return int(code)
    return int(max(codes))


def _chip_worker(
    index: int,
    cfg: IntroduceConfig,
    quiet: bool,
    verify: bool,
    explicit_model: tuple[str, ...],
    folder: str,
    attempt: str,
    hosts: Hosts | None = None,
) -> None:
    """One chip's worker (run by ``torch_xla.launch`` with this chip's ordinal); a typed
    error is reported as the command line reports it (one line) and becomes its code."""
    import torch_xla.runtime as xr

    from mutask.trainer.run import run_worker

    stop = Path(folder) / "stop"
    worker = Worker(*(hosts or Hosts()).place(index, max(1, xr.world_size())))
    try:
        code = run_worker(
            cfg,
            quiet=quiet,
            verify=verify,
            should_stop=stop.exists,
            explicit_model=explicit_model,
            worker=worker,
            attempt=attempt,
        )
    except Exception as err:  # every failure becomes this worker's exit code
        if not isinstance(err, MutaskError):  # a bug: its traceback, as --debug would
            traceback.print_exception(err, file=sys.stderr)
        print(f"mutask: error: worker {index}: {describe(err)}", file=sys.stderr)
        code = exit_code_of(err)
    (Path(folder) / f"code-{index}.json").write_text(json.dumps({"code": int(code)}))
