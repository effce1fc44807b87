"""The operator's settings, one object, read once from flags and ``MUTASK_*`` environment variables.

Every field is a flag ``--field-name`` and an environment variable ``MUTASK_FIELD_NAME`` (the Helm
chart sets the trainer-Job ones on the operator Deployment). Precedence: flag > environment >
default. ``mutask operator --help`` lists every setting with its default. Pure: no I/O.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mutask import contract

ENV_PREFIX = "MUTASK_"


def _opt(help: str, *short: str, flag: str | None = None) -> dict[str, Any]:
    return {"help": help, "short": short, "flag": flag}


@dataclass(frozen=True)
class Settings:
    """Everything the operator process and the trainer Jobs it builds need besides the CRs."""

    # -- what the operator serves, and how (the kopf process) -----------------------------
    namespaces: tuple[str, ...] = field(
        default=(),
        metadata=_opt(
            "namespace to serve (repeatable; glob patterns allowed)", "-n", flag="namespace"
        ),
    )
    all_namespaces: bool = field(default=False, metadata=_opt("serve the whole cluster", "-A"))
    metrics_port: int = field(default=8080, metadata=_opt("operator /metrics port (0: off)"))
    liveness_port: int = field(default=8081, metadata=_opt("operator /healthz port (0: off)"))
    standalone: bool = field(
        default=False, metadata=_opt("no kopf peering (single replica, no HA)")
    )
    peering_name: str | None = field(default=None, metadata=_opt("kopf peering object for HA"))
    priority: int = field(default=0, metadata=_opt("kopf peering priority"))
    verbose: bool = field(default=False, metadata=_opt("debug logging", "-v"))
    watch_server_timeout: int = field(  # the API's timeoutSeconds: "300.0" is a 400
        default=300, metadata=_opt("whole seconds the API server keeps one watch open")
    )
    watch_client_timeout: float = field(
        default=330.0, metadata=_opt("seconds before a silent watch is dropped (no zombies)")
    )
    watch_connect_timeout: float = field(default=10.0, metadata=_opt("seconds to connect a watch"))
    max_workers: int = field(default=16, metadata=_opt("threads running the reconcilers"))
    resync_seconds: float = field(
        default=30.0, metadata=_opt("re-check unfinished introductions this often (kopf timer)")
    )
    system_resync_seconds: float = field(
        default=60.0, metadata=_opt("re-check each MultitaskSystem this often (kopf timer)")
    )

    # -- what goes into the trainer Jobs ------------------------------------------------------
    trainer_image_cpu: str = field(
        default="ghcr.io/mutask/trainer:0.1.0-cpu", metadata=_opt("trainer image for cpu")
    )
    trainer_image_gpu: str = field(
        default="ghcr.io/mutask/trainer:0.1.0-cuda", metadata=_opt("trainer image for gpu")
    )
    trainer_image_tpu: str = field(
        default="ghcr.io/mutask/trainer:0.1.0-tpu", metadata=_opt("trainer image for tpu")
    )
    image_pull_policy: str = field(
        default="IfNotPresent", metadata=_opt("imagePullPolicy of the trainer container")
    )
    trainer_service_account: str = field(
        default="mutask-trainer", metadata=_opt("ServiceAccount of the trainer pods")
    )
    backoff_limit: int = field(
        default=6,
        metadata=_opt("backoffLimit of the trainer Jobs (maxRestarts of multi-host JobSets)"),
    )
    termination_grace_seconds: int = field(
        default=120, metadata=_opt("time a trainer gets to checkpoint after SIGTERM")
    )
    ttl_seconds_after_finished: int = field(
        default=7 * 24 * 3600, metadata=_opt("ttlSecondsAfterFinished of the trainer Jobs")
    )
    run_as_user: int = field(default=10001, metadata=_opt("UID (and GID) of the trainer pods"))
    cpu_request: str = field(
        default="1", metadata=_opt("trainer CPU request (one candidate trains per core)")
    )
    memory_request: str = field(default="2Gi", metadata=_opt("trainer memory request"))
    memory_limit: str = field(default="8Gi", metadata=_opt("trainer memory limit"))
    trainer_metrics_port: int = field(
        default=contract.METRICS_PORT, metadata=_opt("port the trainer serves /metrics on")
    )
    extra_labels: Mapping[str, str] = field(
        default_factory=dict, metadata=_opt("labels added to trainer Jobs (k=v,k=v)")
    )

    def image_for(self, accelerator: str) -> str:
        """The default trainer image for ``cpu``, ``gpu`` or ``tpu``."""
        return {
            "gpu": self.trainer_image_gpu,
            "tpu": self.trainer_image_tpu,
        }.get(accelerator, self.trainer_image_cpu)


class SettingsError(ValueError):
    """A setting's value is invalid; the message names the flag or variable and the value."""


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _flags(f: dataclasses.Field[Any]) -> list[str]:
    return ["--" + (f.metadata.get("flag") or f.name).replace("_", "-"), *f.metadata["short"]]


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Settings)


def _parse(hint: Any, raw: str, where: str) -> Any:
    """One value from its text form (environment variables; flags share the same rules)."""
    if hint in (str, str | None):
        return raw
    try:
        if hint is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off", ""):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint == tuple[str, ...]:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        if hint == Mapping[str, str]:
            pairs = [p.strip() for p in raw.split(",") if p.strip()]
            if any("=" not in p for p in pairs):
                raise ValueError(raw)
            return dict(p.split("=", 1) for p in pairs)
    except ValueError:
        raise SettingsError(f"{where}={raw!r}: must be {_kind(hint)}") from None
    raise TypeError(f"no parser for {hint}")


def _kind(hint: Any) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        tuple[str, ...]: "a comma-separated list",
        Mapping[str, str]: "comma-separated key=value pairs",
    }.get(hint, "text")


def parser() -> argparse.ArgumentParser:
    """``mutask operator`` flags; unset flags are absent from the result (env/defaults apply)."""
    p = argparse.ArgumentParser(
        prog="mutask operator",
        description=(
            "Run the mutask Kubernetes operator (MultitaskSystem, TaskIntroduction). Every "
            f"setting can also be given as an environment variable {ENV_PREFIX}<NAME>; flags win."
        ),
        argument_default=argparse.SUPPRESS,
    )
    hints = _hints()
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        default = _default(f)
        shown = ",".join(default) if isinstance(default, tuple) else default
        shown = "none" if shown in (None, "", {}) else shown
        text = f"{f.metadata['help']} (default: {shown}; env {env_name(f.name)})"
        if hint is bool:
            p.add_argument(*_flags(f), dest=f.name, action="store_true", help=text)
        elif hint == tuple[str, ...]:
            p.add_argument(*_flags(f), dest=f.name, action="append", metavar="NS", help=text)
        else:
            metavar = {int: "N", float: "SECONDS", Mapping[str, str]: "K=V,..."}.get(hint, "TEXT")
            p.add_argument(*_flags(f), dest=f.name, metavar=metavar, help=text)
    return p


def load(argv: Sequence[str], env: Mapping[str, str]) -> Settings:
    """Defaults, then ``MUTASK_*`` from ``env``, then flags; exits 2 on bad input (argparse)."""
    p = parser()
    args = vars(p.parse_args(list(argv)))
    try:
        return from_sources(args, env)
    except SettingsError as err:
        p.error(str(err))
        raise  # unreachable: p.error exits


def from_sources(flags: Mapping[str, Any], env: Mapping[str, str]) -> Settings:
    """Merge parsed flags (raw strings for valued options) over environment values."""
    hints = _hints()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        key = env_name(f.name)
        if key in env:
            values[f.name] = _parse(hint, env[key], key)
        if f.name in flags:
            raw = flags[f.name]
            flag = _flags(f)[0]
            if hint == tuple[str, ...]:
                values[f.name] = tuple(raw)
            elif isinstance(raw, str):
                values[f.name] = _parse(hint, raw, flag)
            else:
                values[f.name] = raw
    return validate(Settings(**values))


def validate(s: Settings) -> Settings:
    """Cross-field and range checks; raise SettingsError naming the flag."""
    if s.namespaces and s.all_namespaces:
        raise SettingsError("--namespace and --all-namespaces exclude each other")
    if not s.namespaces and not s.all_namespaces:
        raise SettingsError("give --namespace NS (repeatable) or --all-namespaces")
    for name in ("metrics_port", "liveness_port", "trainer_metrics_port"):
        port = getattr(s, name)
        if not 0 <= port < 65536:
            raise SettingsError(f"--{name.replace('_', '-')}={port}: must be a TCP port (0-65535)")
    for name in (
        "resync_seconds",
        "system_resync_seconds",
        "watch_server_timeout",
        "watch_connect_timeout",
    ):
        if getattr(s, name) <= 0:
            raise SettingsError(f"--{name.replace('_', '-')}={getattr(s, name)}: must be > 0")
    if s.watch_client_timeout <= s.watch_server_timeout:
        raise SettingsError(
            f"--watch-client-timeout={s.watch_client_timeout}: must exceed "
            f"--watch-server-timeout={s.watch_server_timeout} (else healthy watches are cut)"
        )
    if s.max_workers < 1:
        raise SettingsError(f"--max-workers={s.max_workers}: must be >= 1")
    return s
