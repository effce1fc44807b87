"""The operator↔trainer contract: every value both sides must agree on, defined once.

CRD coordinates, the trainer container's interface (config file, ports, environment), exit
codes and the keys of ``status.progress``. Pure constants: no torch, no Kubernetes client, so
both the operator image and the trainer import it. A value that crosses the boundary between
``mutask.operator`` and ``mutask.trainer`` belongs here and nowhere else.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Final

# -- the custom resources (manifests/crds) ---------------------------------------------------
GROUP: Final = "mutask.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
TI_PLURAL: Final = "taskintroductions"
TI_KIND: Final = "TaskIntroduction"
MTS_PLURAL: Final = "multitasksystems"
MTS_KIND: Final = "MultitaskSystem"

# -- the system ---------------------------------------------------------------------------
ROOT_TASK: Final = "__root__"  # the reserved owner of the root model's components

# -- the trainer container ------------------------------------------------------------------
CONTAINER_NAME: Final = "trainer"
CONFIG_DIR: Final = "/etc/mutask"
CONFIG_FILE: Final = "config.json"
METRICS_PORT: Final = 9090
ENV_INTRODUCTION: Final = "MUTASK_TASKINTRODUCTION"  # namespace/name whose status to patch
ENV_CPU_REQUEST: Final = "MUTASK_TRAINER_CPUS"  # the container's CPU request, whole CPUs
ENV_XLA_CACHE: Final = "MUTASK_XLA_CACHE"  # a folder for XLA's persistent compilation cache
# A multi-host run (a JobSet: one pod per TPU host or GPU node). Unset: a single host.
ENV_HOST_INDEX: Final = "MUTASK_HOST_INDEX"  # this pod's host, 0..hosts-1 (its completion index)
ENV_HOSTS: Final = "MUTASK_HOSTS"  # the hosts of the run (the Job's completions)
ENV_ATTEMPT: Final = "MUTASK_ATTEMPT"  # one start of the whole set, the same on every host


class ExitCode(IntEnum):
    """How a trainer run ends; the operator's podFailurePolicy and status read these."""

    OK = 0
    FAILED = 1  # a real failure (e.g. forgetting detected): retry may help, counts a retry
    BAD_INPUT = 2  # config, dataset, store URI or checkpoint error: retrying cannot help
    FENCED = 3  # another writer holds the task's lease
    PREEMPTED = 75  # EX_TEMPFAIL: SIGTERM received, checkpoint saved, retry for free


class Progress(StrEnum):
    """Keys of ``TaskIntroduction.status.progress`` (camelCase, as the CRD spells them).

    The trainer emits progress with snake_case names (:attr:`snake`); the status reporter
    writes the CRD spelling and the operator reads it back through these members.
    """

    GENERATION = "generation"
    GENERATIONS = "generations"
    CANDIDATES_TRAINED = "candidatesTrained"
    CANDIDATES_TOTAL = "candidatesTotal"
    BEST_SCORE = "bestScore"
    BEST_ACCURACY = "bestAccuracy"
    ACCOUNTED_PARAMS = "accountedParams"
    PENALTY = "penalty"
    PARAMS_ADDED = "paramsAdded"
    CHECKPOINT_URI = "checkpointURI"
    TEST_ACCURACY = "testAccuracy"
    NO_FORGETTING_VERIFIED = "noForgettingVerified"
    COMPONENT_COUNT = "componentCount"
    SYSTEM_PARAMS = "systemParams"
    EXAMPLES_TRAINED = "examplesTrained"
    UPDATE_TIME = "updateTime"

    @property
    def snake(self) -> str:
        """The trainer-side name: ``checkpointURI`` -> ``checkpoint_uri``."""
        out = []
        for i, ch in enumerate(self.value):
            if ch.isupper() and i and not self.value[i - 1].isupper():
                out.append("_")
            out.append(ch.lower())
        return "".join(out)


FINAL_PROGRESS: Final = frozenset({Progress.TEST_ACCURACY, Progress.NO_FORGETTING_VERIFIED})
