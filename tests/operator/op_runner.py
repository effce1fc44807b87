"""Run the operator in-process, through its one entry point (``mutask.operator.main.run``),
in a thread with its own event loop (as kopf's KopfRunner does for ``kopf run``)."""

from __future__ import annotations

import io
import logging
import threading
import types


class OperatorRunner:
    """``with OperatorRunner(argv) as op:`` runs ``mutask operator ARGV`` until the block ends.

    After the block: ``exception`` (what ``run`` raised, if anything; re-raised on exit unless
    the block itself raised), ``exit_code`` and ``output`` (the log lines it wrote).
    """

    def __init__(self, argv: list[str], timeout: float = 30.0) -> None:
        self.argv = argv
        self.timeout = timeout
        self.exception: BaseException | None = None
        self.exit_code: int | None = None
        self._stop = threading.Event()
        self._log = io.StringIO()
        self._handler = logging.StreamHandler(self._log)
        self._thread = threading.Thread(target=self._target, name="operator")

    @property
    def output(self) -> str:
        return self._log.getvalue()

    def _target(self) -> None:
        from mutask.operator.main import run

        try:
            self.exit_code = run(self.argv, stop=self._stop)
        except BaseException as err:  # reported by __exit__
            self.exception = err

    def __enter__(self) -> OperatorRunner:
        logging.getLogger().addHandler(self._handler)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(self.timeout)
        logging.getLogger().removeHandler(self._handler)
        if self._thread.is_alive():
            raise RuntimeError("the operator did not stop")
        if self.exception is not None and exc is None:
            raise self.exception
