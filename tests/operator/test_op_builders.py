"""Table tests of the pure builders: ConfigMap (trainer JSON) and Job for every variant."""

from __future__ import annotations

from typing import Any

import pytest
from op_samples import INTRO, SYSTEM, merged

from mutask import contract
from mutask.operator import api, config_builder, job_builder
from mutask.operator.objects import job_name
from mutask.operator.settings import Settings
from mutask.operator.spec import (
    IntroductionSpec,
    bootstrap_introduction,
    parse_introduction,
    parse_system,
)
from mutask.trainer.config import BudgetConfig, ConfigError, IntroduceConfig

S = Settings()


# The builders take parsed specs; these tests keep writing the custom resources as dicts.
def _intro(intro: dict[str, Any] | IntroductionSpec) -> IntroductionSpec:
    return intro if isinstance(intro, IntroductionSpec) else parse_introduction(intro)


def build_job(system: dict[str, Any], intro: Any, settings: Settings, **kw: Any) -> dict[str, Any]:
    return job_builder.build_job(parse_system(system), _intro(intro), settings, **kw)


def build_config(system: dict[str, Any], intro: Any, settings: Settings) -> IntroduceConfig:
    return config_builder.build_config(parse_system(system), _intro(intro), settings)


def build_configmap(
    system: dict[str, Any], intro: Any, settings: Settings, **kw: Any
) -> dict[str, Any]:
    return config_builder.build_configmap(parse_system(system), _intro(intro), settings, **kw)


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod(job)["containers"]
    assert c["name"] == "trainer"
    return dict(c)


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(job)["env"]}


TPU = {"type": "tpu", "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "2x4", "chips": 8}}
GPU = {"type": "gpu", "gpu": {"type": "nvidia-l4", "count": 2}}

# (id, accelerator, expected nodeSelector, expected device resources, toleration keys, PJRT, image)
PLACEMENT = [
    ("cpu", {"type": "cpu"}, {}, {}, set(), None, S.trainer_image_cpu),
    (
        "tpu",
        TPU,
        {api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice", api.GKE_TPU_TOPOLOGY: "2x4"},
        {"google.com/tpu": 8},
        {"google.com/tpu"},
        "TPU",
        S.trainer_image_tpu,
    ),
    (
        "gpu",
        GPU,
        {api.GKE_ACCELERATOR: "nvidia-l4"},
        {"nvidia.com/gpu": 2},
        {"nvidia.com/gpu"},
        None,
        S.trainer_image_gpu,
    ),
    (
        "gpu-spot",
        {**GPU, "spot": True},
        {api.GKE_ACCELERATOR: "nvidia-l4", api.GKE_SPOT: "true"},
        {"nvidia.com/gpu": 2},
        {"nvidia.com/gpu", api.GKE_SPOT},
        None,
        S.trainer_image_gpu,
    ),
    (
        "cpu-spot",
        {"type": "cpu", "spot": True},
        {api.GKE_SPOT: "true"},
        {},
        {api.GKE_SPOT},
        None,
        S.trainer_image_cpu,
    ),
    (
        "tpu-spot",
        {**TPU, "spot": True},
        {
            api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice",
            api.GKE_TPU_TOPOLOGY: "2x4",
            api.GKE_SPOT: "true",
        },
        {"google.com/tpu": 8},
        {"google.com/tpu", api.GKE_SPOT},
        "TPU",
        S.trainer_image_tpu,
    ),
]


@pytest.mark.parametrize(
    ("accel", "selector", "devices", "tolerations", "pjrt", "image"),
    [p[1:] for p in PLACEMENT],
    ids=[p[0] for p in PLACEMENT],
)
def test_placement(
    accel: dict[str, Any],
    selector: dict[str, str],
    devices: dict[str, int],
    tolerations: set[str],
    pjrt: str | None,
    image: str,
) -> None:
    job = build_job(SYSTEM, merged(INTRO, accelerator=accel), S)
    assert pod(job).get("nodeSelector", {}) == selector
    res = container(job)["resources"]
    for key, count in devices.items():
        assert res["requests"][key] == count and res["limits"][key] == count
    assert {t["key"] for t in pod(job).get("tolerations", [])} == tolerations
    for t in pod(job).get("tolerations", []):
        assert t["effect"] == "NoSchedule"
    assert env(job).get("PJRT_DEVICE") == pjrt
    assert container(job)["image"] == image
    config = IntroduceConfig.from_json(
        build_configmap(SYSTEM, merged(INTRO, accelerator=accel), S)["data"]["config.json"]
    )
    assert config.device == {"cpu": "cpu", "gpu": "cuda", "tpu": "xla"}[accel["type"]]


def test_accelerator_defaults_to_system_then_cpu() -> None:
    system = merged(SYSTEM, defaults={"accelerator": GPU})
    assert pod(build_job(system, INTRO, S))["nodeSelector"] == {api.GKE_ACCELERATOR: "nvidia-l4"}
    bare = merged(SYSTEM, defaults={})
    assert "nodeSelector" not in pod(build_job(bare, INTRO, S))


@pytest.mark.parametrize(
    ("queue", "suspend", "job_suspended", "label"),
    [
        (None, False, False, None),
        (None, True, True, None),
        ("gpu-spot", False, True, "gpu-spot"),
        ("gpu-spot", True, True, "gpu-spot"),
    ],
)
def test_kueue_and_suspend(
    queue: str | None, suspend: bool, job_suspended: bool, label: str | None
) -> None:
    extra: dict[str, Any] = {"suspend": suspend}
    if queue:
        extra["queueName"] = queue
    job = build_job(SYSTEM, merged(INTRO, **extra), S)
    assert job["spec"]["suspend"] is job_suspended
    assert job["metadata"]["labels"].get(api.LABEL_KUEUE_QUEUE) == label
    assert api.LABEL_KUEUE_QUEUE not in job["spec"]["template"]["metadata"]["labels"]


def test_restricted_pod_security() -> None:
    job = build_job(SYSTEM, INTRO, S)
    psc = pod(job)["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["seccompProfile"] == {"type": "RuntimeDefault"}
    csc = container(job)["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert volumes[mounts["/etc/mutask"]]["configMap"]["name"] == job_name("digits-1")
    assert pod(job)["serviceAccountName"] == S.trainer_service_account
    assert pod(job)["restartPolicy"] == "Never"


PVC = {"claimName": "tiny-store"}

# (id, storage, expected store volume or None, expected mountPath or None)
STORAGE = [
    ("gs", {"uri": "gs://bucket/systems/vision"}, None, None),
    ("gs-pvc-ignored", {"uri": "gs://bucket/p", "persistentVolumeClaim": PVC}, None, None),
    (
        "file-pvc",
        {"uri": "file:///var/lib/mutask/tiny", "persistentVolumeClaim": PVC},
        {"claimName": "tiny-store"},
        "/var/lib/mutask/tiny",
    ),
    (
        "file-pvc-trailing-slash",
        {"uri": "file:///data/store/", "persistentVolumeClaim": PVC},
        {"claimName": "tiny-store"},
        "/data/store",
    ),
]


@pytest.mark.parametrize(
    ("storage", "claim", "mount_path"), [s[1:] for s in STORAGE], ids=[s[0] for s in STORAGE]
)
@pytest.mark.parametrize("bootstrap_root", [False, True], ids=["intro", "bootstrap"])
def test_store_volume(
    storage: dict[str, Any],
    claim: dict[str, Any] | None,
    mount_path: str | None,
    bootstrap_root: bool,
) -> None:
    boot = {"preset": "mu-tiny", "bootstrap": {"task": "digits", "dataset": {"uri": "digits"}}}
    system = merged(SYSTEM, storage=storage, rootModel=boot)
    intro = bootstrap_introduction(parse_system(system)) if bootstrap_root else INTRO
    job = build_job(system, intro, S, bootstrap_root=bootstrap_root)
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    mounts = {m["name"]: m for m in container(job)["volumeMounts"]}
    if claim is None:
        assert "store" not in volumes and "store" not in mounts
        assert not any("persistentVolumeClaim" in v for v in volumes.values())
        assert set(volumes) == {"config", "tmp"}
        return
    assert volumes["store"] == {"name": "store", "persistentVolumeClaim": claim}
    assert mounts["store"] == {"name": "store", "mountPath": mount_path}  # writable
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True


def test_command_env_ports_and_metadata() -> None:
    job = build_job(SYSTEM, INTRO, Settings(backoff_limit=9))
    c = container(job)
    assert c["command"] + c["args"] == [
        "mutask",
        "introduce",
        "--config",
        "/etc/mutask/config.json",
        "--metrics-port",
        "9090",
    ]
    assert env(job)[contract.ENV_INTRODUCTION] == "ml/digits-1"
    (cpu,) = [e for e in c["env"] if e["name"] == contract.ENV_CPU_REQUEST]
    assert cpu["valueFrom"]["resourceFieldRef"] == {
        "containerName": c["name"],
        "resource": "requests.cpu",
        "divisor": "1",
    }
    assert c["ports"] == [{"name": "metrics", "containerPort": 9090}]
    assert job["spec"]["backoffLimit"] == 9
    assert job["metadata"]["name"] == "mti-digits-1"
    assert job["metadata"]["annotations"][api.LABEL_INTRODUCTION] == "digits-1"
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "TaskIntroduction",
        "name": "digits-1",
        "uid": "ti-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_pod_failure_policy() -> None:
    rules = build_job(SYSTEM, INTRO, S)["spec"]["podFailurePolicy"]["rules"]
    by_action: dict[str, list[dict[str, Any]]] = {}
    for rule in rules:
        by_action.setdefault(rule["action"], []).append(rule)
    (fail,) = by_action["FailJob"]
    assert fail["onExitCodes"] == {"containerName": "trainer", "operator": "In", "values": [2, 3]}
    ignored = by_action["Ignore"]
    assert {"containerName": "trainer", "operator": "In", "values": [75]} in [
        r.get("onExitCodes") for r in ignored
    ]
    assert [{"type": "DisruptionTarget"}] in [r.get("onPodConditions") for r in ignored]


def test_resources_merge() -> None:
    intro = merged(
        INTRO, resources={"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "20Gi"}}
    )
    res = container(build_job(SYSTEM, intro, S))["resources"]
    assert res == {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "20Gi"}}


def test_image_override_and_long_names() -> None:
    intro = merged(INTRO, image="example.com/t:1")
    intro["metadata"]["name"] = "x" * 200
    job = build_job(SYSTEM, intro, S)
    assert container(job)["image"] == "example.com/t:1"
    assert len(job["metadata"]["name"]) <= 52
    assert job["metadata"]["name"] == job_name("x" * 200)  # deterministic
    assert all(len(v) <= 63 for v in job["metadata"]["labels"].values())


def test_private_task_label_is_sanitised() -> None:
    job = build_job(SYSTEM, merged(INTRO, task="private:xrays"), S)
    assert job["metadata"]["labels"][api.LABEL_TASK] == "private.xrays"
    assert job["metadata"]["annotations"][api.ANNOTATION_TASK] == "private:xrays"


def test_configmap_is_exact_trainer_json() -> None:
    intro = merged(
        INTRO,
        budget={"generations": 7, "stepsPerRound": 11},
        search={"perActionMu": True, "adapters": False, "populationCap": 5},
        dataset={"uri": "gs://bucket/d.npz", "labelMap": {"3": 0, "5": 1}, "maxTrainExamples": 100},
    )
    cm = build_configmap(SYSTEM, intro, S)
    text = cm["data"]["config.json"]
    config = IntroduceConfig.from_json(text)
    assert text == config.to_json()
    assert config.task == "digits" and config.store == "gs://bucket/systems/vision"
    assert config.seed == 3
    # TI budget > system defaults > trainer defaults
    assert (config.budget.generations, config.budget.candidates) == (7, 5)
    assert (config.budget.steps_per_round, config.budget.batch_size) == (11, 16)
    assert config.budget.validation_rounds == BudgetConfig.validation_rounds  # trainer default
    assert config.search.size_scale == 0.5  # from the system's scoring
    assert config.search.per_action_mu is True and config.search.adapters is False
    assert config.search.population_cap == 5
    assert (config.model.preset, config.model.image_size) == ("mu-small", 32)
    assert config.dataset.label_map == {"3": 0, "5": 1} and config.dataset.labels is None
    assert config.dataset.max_train_examples == 100
    assert config.metrics_port == 9090 and config.bootstrap_root is False
    assert cm["metadata"]["name"] == "mti-digits-1"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "ti-uid"


def test_search_size_scale_override_and_weights() -> None:
    system = merged(
        SYSTEM, rootModel={"preset": "mu-tiny", "imageSize": 16, "weightsURI": "gs://b/w"}
    )
    config = build_config(system, merged(INTRO, search={"sizeScale": 0.25}), S)
    assert config.search.size_scale == 0.25 and config.model.weights == "gs://b/w"


def test_bootstrap_job_owned_by_system() -> None:
    system = merged(
        SYSTEM,
        rootModel={
            "preset": "mu-tiny",
            "bootstrap": {"task": "digits", "dataset": {"uri": "digits"}},
        },
    )
    intro = bootstrap_introduction(parse_system(system))
    job = build_job(system, intro, S, bootstrap_root=True)
    assert job["metadata"]["name"] == "mti-vision-bootstrap"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "MultitaskSystem"
    assert contract.ENV_INTRODUCTION not in env(job)
    config = IntroduceConfig.from_json(
        build_configmap(system, intro, S, bootstrap_root=True)["data"]["config.json"]
    )
    assert config.bootstrap_root is True and config.task == "digits"


def test_first_introduction_into_an_empty_store_creates_the_root() -> None:
    cm = build_configmap(SYSTEM, INTRO, S, creates_root=True)
    assert IntroduceConfig.from_json(cm["data"]["config.json"]).bootstrap_root is True
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "ti-uid"  # still the introduction's


def test_bad_values_raise_config_error_naming_field() -> None:
    with pytest.raises(ConfigError) as err:
        build_config(SYSTEM, merged(INTRO, budget={"generations": 0}), S)
    assert err.value.field_path == "budget.generations"


def test_tpu_jobs_keep_xla_compilations_in_a_volume() -> None:
    """The trainer's persistent XLA compilation cache (MUTASK_XLA_CACHE) is a writable
    volume in TPU pods (the root filesystem is read-only); other accelerators have none."""
    job = build_job(SYSTEM, merged(INTRO, accelerator=TPU), S)
    cache = env(job)[contract.ENV_XLA_CACHE]
    mounts = {m["mountPath"]: m["name"] for m in container(job)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(job)["volumes"]}
    assert volumes[mounts[cache]]["emptyDir"] == {}
    assert contract.ENV_XLA_CACHE not in env(build_job(SYSTEM, INTRO, S))
