"""The trainer's typed failures, and how the command line reports one: a line and an exit code.

Every failure a user can cause or fix (a bad flag, config value, dataset, store URI, store
content, device or port) is a :class:`MutaskError` whose message names the field or the
object (a store object by URI and key) and the value. Its ``exit_code`` says how the run
ends (:class:`mutask.contract.ExitCode`): 2 for bad input, which no retry can fix (the
operator's Job fails fast), 3 when fenced off by another writer, 1 for real failures a retry
may fix. The command line (:func:`mutask.trainer.cli.main`) prints ``mutask: error:
<message>`` (:func:`describe`) and exits with :func:`exit_code_of`; a traceback only with
``--debug`` (or ``MUTASK_DEBUG=1``). Anything else that escapes is a bug: it is reported the
same way as an internal error (exit 1) with a hint to rerun with ``--debug``.

Pure (no torch, no I/O): the config, the store, the data loaders and the operator import it.
"""

from __future__ import annotations

from typing import ClassVar

from mutask.contract import ExitCode

INTERRUPTED_EXIT = 130  # the shell's code for SIGINT (Ctrl-C)


class MutaskError(Exception):
    """A failure reported as one line (the message) and ``exit_code``; never a traceback."""

    exit_code: ClassVar[int] = ExitCode.FAILED


class BadInput(MutaskError, ValueError):
    """Bad input (flag, config, dataset, store URI or content, device, port): exit 2."""

    exit_code: ClassVar[int] = ExitCode.BAD_INPUT


class FieldError(BadInput):
    """A bad value of one named field: ``<field>=<value!r>: <why>``."""

    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"{field}={value!r}: {why}")
        self.field = field
        self.value = value
        self.why = why

    def __reduce__(self) -> tuple[type[FieldError], tuple[str, object, str]]:
        return type(self), (self.field, self.value, self.why)


class ConfigError(FieldError):
    """A configuration value is invalid (:mod:`mutask.trainer.config`, :mod:`.limits`)."""

    @property
    def field_path(self) -> str:
        return self.field


class DeviceError(FieldError):
    """The requested device does not exist here (``device=cuda`` without a GPU, ...)."""


class PortError(FieldError):
    """The metrics port cannot be listened on (busy, privileged)."""


class NotPublished(BadInput):
    """A command names a task the store has not published."""

    def __init__(self, task: str, store: str, published: list[str]) -> None:
        known = ", ".join(published) or "none"
        super().__init__(f"task {task!r} is not published in {store} (published: {known})")
        self.task = task


def exit_code_of(err: BaseException) -> int:
    """How a run that failed with ``err`` exits."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED_EXIT
    code = getattr(err, "exit_code", None)
    if isinstance(err, MutaskError) and isinstance(code, int):
        return code
    return ExitCode.FAILED


def describe(err: BaseException) -> str:
    """The one line that names what failed (an internal error says it is one)."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    if isinstance(err, MutaskError):
        return str(err) or type(err).__name__
    text = str(err).splitlines()[0] if str(err) else ""
    return (
        f"internal error: {type(err).__name__}: {text} "
        "(a bug in mutask; rerun with --debug for the traceback and report it)"
    )
