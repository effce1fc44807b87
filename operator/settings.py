"""Operator settings: trainer images, service account, retry budget, timings (from env vars).

Every field has a default that works on GKE; each can be overridden with an environment variable
``MUTASK_<FIELD_NAME_UPPER>`` (the Helm chart sets them on the operator Deployment).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorSettings:
    """What the builders and reconcilers need besides the two custom resources."""

    trainer_image_cpu: str = "ghcr.io/mutask/trainer:0.1.0-cpu"
    trainer_image_gpu: str = "ghcr.io/mutask/trainer:0.1.0-cuda"
    trainer_image_tpu: str = "ghcr.io/mutask/trainer:0.1.0-tpu"
    image_pull_policy: str = "IfNotPresent"
    trainer_service_account: str = "mutask-trainer"
    backoff_limit: int = 6
    termination_grace_seconds: int = 120
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    run_as_user: int = 10001
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    memory_limit: str = "8Gi"
    metrics_port: int = 9090
    resync_seconds: float = 30.0
    system_resync_seconds: float = 60.0
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        """Read ``MUTASK_*`` overrides (ints and floats are parsed; bad values raise ValueError)."""
        env = os.environ if env is None else env
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            key = "MUTASK_" + f.name.upper()
            if key not in env or f.name == "extra_labels":
                continue
            raw = env[key]
            if f.type in ("int", int):
                kwargs[f.name] = int(raw)
            elif f.type in ("float", float):
                kwargs[f.name] = float(raw)
            else:
                kwargs[f.name] = raw
        return cls(**kwargs)  # type: ignore[arg-type]

    def image_for(self, accelerator: str) -> str:
        """The default trainer image for ``cpu``, ``gpu`` or ``tpu``."""
        return {
            "gpu": self.trainer_image_gpu,
            "tpu": self.trainer_image_tpu,
        }.get(accelerator, self.trainer_image_cpu)
