"""Tables of custom resources the CRDs must refuse because the trainer would (issue 12), and of
near misses they must accept. Same shape as the other CRD case tables (op_crd_cases.py, whose
``ti(**spec)`` / ``mts(**spec)`` build the objects): ``(id, spec changes, text the error
names)``. Shared by the offline tests (tests/operator/test_op_crd_limits.py) and the
real-apiserver ones (tests/cluster/test_cluster_crds.py)."""

from __future__ import annotations

from typing import Any

from op_crd_cases import mts, ti

__all__ = ["GOOD_MTS", "GOOD_TI", "LIMIT_MTS", "LIMIT_TI", "mts", "ti"]


def ds(**fields: Any) -> dict[str, Any]:
    """A TaskIntroduction dataset: digits plus ``fields``."""
    return {"dataset": {"uri": "digits", **fields}}


def tpu(topology: str, chips: int, accelerator: str = "tpu-v5-lite-podslice") -> dict[str, Any]:
    block = {"accelerator": accelerator, "topology": topology, "chips": chips}
    return {"type": "tpu", "tpu": block}


def cpu_nodes(nodes: int) -> dict[str, Any]:
    return {"type": "cpu", "cpu": {"nodes": nodes}}


def gpu_nodes(nodes: int) -> dict[str, Any]:
    return {"type": "gpu", "gpu": {"type": "nvidia-l4", "count": 1, "nodes": nodes}}


def boot(**fields: Any) -> dict[str, Any]:
    """A MultitaskSystem bootstrapping on digits plus dataset ``fields``."""
    return {"rootModel": {"bootstrap": {"task": "digits", "dataset": {"uri": "digits", **fields}}}}


def store(uri: str) -> dict[str, Any]:
    return {"storage": {"uri": uri, "persistentVolumeClaim": {"claimName": "c"}}}


SINGLE_HOST = "spec.accelerator.tpu.topology must be a single-host slice"
PER_HOST = "spec.accelerator.tpu.chips must be the chips of one host of the slice"
NOT_OFFERED = "spec.accelerator.tpu.topology must be a slice GKE offers for"
BUILTIN_LABELS = "must be 0..9 for the built-in datasets"
MAP_KEYS = "spec.dataset.labelMap keys must be source labels"
MAP_DENSE = "spec.dataset.labelMap values must be the task labels 0..n-1"

LIMIT_TI: list[tuple[str, dict[str, Any], str]] = [
    ("tpu-4x4-with-8-chips", {"accelerator": tpu("4x4", 8)}, PER_HOST),
    ("tpu-2x4-with-4-chips", {"accelerator": tpu("2x4", 4)}, PER_HOST),
    ("tpu-2x2-with-8-chips", {"accelerator": tpu("2x2", 8)}, PER_HOST),
    ("tpu-16x16-with-8-chips", {"accelerator": tpu("16x16", 8)}, PER_HOST),
    ("tpu-v5e-2x2x2", {"accelerator": tpu("2x2x2", 4)}, f"{NOT_OFFERED} tpu-v5-lite-podslice"),
    ("tpu-v5e-3x3", {"accelerator": tpu("3x3", 4)}, f"{NOT_OFFERED} tpu-v5-lite-podslice"),
    ("tpu-v5e-32x32", {"accelerator": tpu("32x32", 4)}, f"{NOT_OFFERED} tpu-v5-lite-podslice"),
    ("tpu-v6e-4x4x4", {"accelerator": tpu("4x4x4", 4, "tpu-v6e-slice")}, NOT_OFFERED),
    ("tpu-v5p-4x4", {"accelerator": tpu("4x4", 4, "tpu-v5p-slice")}, f"{NOT_OFFERED} tpu-v5p"),
    ("tpu-v5p-2x2x2-with-8", {"accelerator": tpu("2x2x2", 8, "tpu-v5p-slice")}, PER_HOST),
    ("tpu-v4-3x3x3", {"accelerator": tpu("3x3x3", 4, "tpu-v4-podslice")}, NOT_OFFERED),
    ("tpu-unknown-4x4", {"accelerator": tpu("4x4", 4, "tpu-v9-future")}, SINGLE_HOST),
    ("gpu-nodes-0", {"accelerator": gpu_nodes(0)}, "accelerator.gpu.nodes"),
    ("cpu-nodes-0", {"accelerator": cpu_nodes(0)}, "accelerator.cpu.nodes"),
    ("cpu-nodes-65", {"accelerator": cpu_nodes(65)}, "accelerator.cpu.nodes"),
    (
        "cpu-block-on-gpu",
        {"accelerator": {**gpu_nodes(2), "cpu": {"nodes": 2}}},
        "spec.accelerator.cpu is only allowed when spec.accelerator.type is cpu",
    ),
    ("gpu-nodes-65", {"accelerator": gpu_nodes(65)}, "accelerator.gpu.nodes"),
    ("labels-empty", ds(labels=[]), "dataset.labels"),
    ("labels-one-class", ds(labels=[3]), "dataset.labels"),
    ("labels-repeated", ds(labels=[1, 1]), "dataset.labels"),
    ("labels-beyond-digits", ds(labels=[0, 99]), BUILTIN_LABELS),
    ("labels-beyond-mnist", {"dataset": {"uri": "mnist", "labels": [0, 10]}}, BUILTIN_LABELS),
    (
        "labels-beyond-any-source",
        {"dataset": {"uri": "file:///d.npz", "labels": [0, 40000]}},
        "dataset.labels",
    ),
    ("labels-negative", ds(labels=[-1, 2]), "dataset.labels"),
    ("label-map-key-a", ds(labelMap={"a": 0, "1": 1}), MAP_KEYS),
    ("label-map-key-negative", ds(labelMap={"-1": 0, "1": 1}), MAP_KEYS),
    ("label-map-key-spaces", ds(labelMap={" 1": 0, "2": 1}), MAP_KEYS),
    ("label-map-one-entry", ds(labelMap={"1": 0}), "dataset.labelMap"),
    ("label-map-one-class", ds(labelMap={"1": 0, "2": 0}), MAP_DENSE),
    ("label-map-gap", ds(labelMap={"1": 0, "2": 2}), MAP_DENSE),
    ("label-map-no-zero", ds(labelMap={"1": 1, "2": 2}), MAP_DENSE),
    ("label-map-key-beyond-digits", ds(labelMap={"10": 0, "1": 1}), BUILTIN_LABELS),
    ("label-map-target-huge", ds(labelMap={"1": 0, "2": 40000}), "dataset.labelMap"),
    ("transform-rot45", ds(transform="rot45"), "dataset.transform"),
    ("transform-empty", ds(transform=""), "dataset.transform"),
    ("split-garbage-bound", ds(trainSplit="train[abc]"), "dataset.trainSplit"),
    ("split-empty", ds(validationSplit=""), "dataset.validationSplit"),
    ("split-150-percent", ds(testSplit="test[:150%]"), "dataset.testSplit"),
    ("split-fractional-count", ds(trainSplit="train[1.5:]"), "dataset.trainSplit"),
    ("split-two-colons", ds(trainSplit="train[1:2:3]"), "dataset.trainSplit"),
    ("split-plus-nothing", ds(trainSplit="train+"), "dataset.trainSplit"),
    ("uri-s3", {"dataset": {"uri": "s3://b/x.npz"}}, "dataset.uri"),
    ("uri-http", {"dataset": {"uri": "http://x/y.npz"}}, "dataset.uri"),
    ("uri-https", {"dataset": {"uri": "https://x/y.npz"}}, "dataset.uri"),
    ("uri-gs-without-object", {"dataset": {"uri": "gs://bucket"}}, "dataset.uri"),
    ("uri-gs-without-bucket", {"dataset": {"uri": "gs:///x.npz"}}, "dataset.uri"),
    ("uri-file-root", {"dataset": {"uri": "file:///"}}, "dataset.uri"),
    ("uri-hf-hub", {"dataset": {"uri": "hf://datasets/beans"}}, "dataset.uri"),
    ("max-train-examples-0", ds(maxTrainExamples=0), "dataset.maxTrainExamples"),
    ("max-train-examples-2e9", ds(maxTrainExamples=2 * 10**9), "dataset.maxTrainExamples"),
    (
        "max-validation-1e9",
        {"budget": {"maxValidationExamples": 10**9}},
        "budget.maxValidationExamples",
    ),
    ("batch-1e9", {"budget": {"batchSize": 10**9}}, "budget.batchSize"),
    ("steps-1e12", {"budget": {"stepsPerRound": 10**12}}, "budget.stepsPerRound"),
    ("generations-1001", {"budget": {"generations": 1001}}, "budget.generations"),
    ("candidates-0", {"budget": {"candidatesPerGeneration": 0}}, "budget.candidatesPerGeneration"),
    ("population-cap-5000", {"search": {"populationCap": 5000}}, "search.populationCap"),
    ("seed-2**31", {"seed": 2**31}, "spec.seed"),
]

FOLDER = "spec.storage.uri must name a folder"
OWN_FOLDERS = "spec.storage.uri must not be mounted over the trainer pod's own folders"
PATCH = "spec.rootModel.imageSize must be a multiple of the preset's patch size"
BOOT_DS = "spec.rootModel.bootstrap.dataset"

LIMIT_MTS: list[tuple[str, dict[str, Any], str]] = [
    ("store-file-root", store("file:///"), FOLDER),
    ("store-file-root-twice", store("file:////"), FOLDER),
    ("store-empty-segment", store("file:////var/x"), FOLDER),
    ("store-space", store("file:///var/a b"), FOLDER),
    ("store-dotdot", store("file:///var/../etc"), "'.' or '..' segments"),
    ("store-dot", store("file:///var/./x"), "'.' or '..' segments"),
    ("store-tmp", store("file:///tmp"), OWN_FOLDERS),
    ("store-var", store("file:///var"), OWN_FOLDERS),
    ("store-etc", store("file:///etc"), OWN_FOLDERS),
    ("store-etc-mutask", store("file:///etc/mutask"), OWN_FOLDERS),
    ("store-dev-shm", store("file:///dev/shm"), OWN_FOLDERS),
    ("store-proc", store("file:///proc/x"), OWN_FOLDERS),
    ("store-usr-lib", store("file:///usr/lib/x"), OWN_FOLDERS),
    ("store-venv", store("file:///opt/venv"), OWN_FOLDERS),
    ("store-run", store("file:///run/x"), OWN_FOLDERS),
    (
        "store-gs-empty-segment",
        {"storage": {"uri": "gs://bucket//x"}},
        "spec.storage.uri must be gs://",
    ),
    ("store-gs-dotdot", {"storage": {"uri": "gs://bucket/a/../b"}}, "'.' or '..' segments"),
    ("store-gs-uppercase-bucket", {"storage": {"uri": "gs://Bucket/x"}}, "storage.uri"),
    ("store-s3", {"storage": {"uri": "s3://bucket/x"}}, "storage.uri"),
    ("preset-unknown", {"rootModel": {"preset": "nosuch"}}, "rootModel.preset"),
    ("image-size-18-mu-tiny", {"rootModel": {"imageSize": 18}}, PATCH),
    ("image-size-24-b16", {"rootModel": {"preset": "b16", "imageSize": 24}}, PATCH),
    ("image-size-2000", {"rootModel": {"imageSize": 2000}}, "rootModel.imageSize"),
    ("weights-s3", {"rootModel": {"weightsURI": "s3://b/w.npz"}}, "rootModel.weightsURI"),
    ("weights-empty", {"rootModel": {"weightsURI": ""}}, "rootModel.weightsURI"),
    ("bootstrap-labels-empty", boot(labels=[]), f"{BOOT_DS}.labels"),
    ("bootstrap-labels-beyond-digits", boot(labels=[0, 99]), f"{BOOT_DS}.labels and"),
    ("bootstrap-label-map-key-a", boot(labelMap={"a": 0, "1": 1}), f"{BOOT_DS}.labelMap keys"),
    ("bootstrap-transform-rot45", boot(transform="rot45"), f"{BOOT_DS}.transform"),
    ("bootstrap-split-garbage", boot(trainSplit="train[abc]"), f"{BOOT_DS}.trainSplit"),
    (
        "bootstrap-uri-http",
        {"rootModel": {"bootstrap": {"task": "d", "dataset": {"uri": "http://x"}}}},
        f"{BOOT_DS}.uri",
    ),
    (
        "defaults-tpu-4x4",
        {"defaults": {"accelerator": tpu("4x4", 8)}},
        "spec.defaults.accelerator.tpu.chips must be",
    ),
    (
        "defaults-max-validation-1e9",
        {"defaults": {"budget": {"maxValidationExamples": 10**9}}},
        "budget.maxValidationExamples",
    ),
]

# near misses the CRDs must accept (and the trainer's config too)
GOOD_TI: list[tuple[str, dict[str, Any]]] = [
    ("tpu-2x4-with-8-chips", {"accelerator": tpu("2x4", 8)}),
    ("tpu-2x2-with-4-chips", {"accelerator": tpu("2x2", 4)}),
    ("tpu-1x1-with-1-chip", {"accelerator": tpu("1x1", 1)}),
    ("tpu-v5p-2x2x1-with-4-chips", {"accelerator": tpu("2x2x1", 4, "tpu-v5p-slice")}),
    ("tpu-v5e-4x4-four-hosts", {"accelerator": tpu("4x4", 4)}),
    ("tpu-v5e-16x16-64-hosts", {"accelerator": tpu("16x16", 4)}),
    ("tpu-v6e-8x8", {"accelerator": tpu("8x8", 4, "tpu-v6e-slice")}),
    ("tpu-v6e-2x4-single-host", {"accelerator": tpu("2x4", 8, "tpu-v6e-slice")}),
    ("tpu-v5p-2x2x2-two-hosts", {"accelerator": tpu("2x2x2", 4, "tpu-v5p-slice")}),
    ("tpu-v5p-16x16x24", {"accelerator": tpu("16x16x24", 4, "tpu-v5p-slice")}),
    ("tpu-v4-2x4x4", {"accelerator": tpu("2x4x4", 4, "tpu-v4-podslice")}),
    ("tpu-unknown-single-host", {"accelerator": tpu("2x2x1", 4, "tpu-v5-lite-device")}),
    ("gpu-two-nodes", {"accelerator": gpu_nodes(2)}),
    ("cpu-three-nodes", {"accelerator": cpu_nodes(3)}),
    ("gpu-64-nodes", {"accelerator": gpu_nodes(64)}),
    ("labels-two", ds(labels=[0, 9])),
    ("labels-any-order", ds(labels=[7, 2, 5])),
    ("labels-of-a-file-source", {"dataset": {"uri": "file:///d.npz", "labels": [0, 500]}}),
    ("label-map-parity", ds(labelMap={str(i): i % 2 for i in range(10)})),
    ("label-map-shuffled-targets", ds(labelMap={"3": 1, "4": 0, "5": 2})),
    ("splits-combined", ds(trainSplit="train[:90%]+test[:10]", testSplit="test[10:]")),
    ("split-negative-bounds", ds(trainSplit="train[:-5%]", validationSplit="train[-5%:]")),
    ("split-counts", ds(testSplit="test[:1000]")),
    ("transform", ds(transform="flip_lr")),
    ("uri-path", {"dataset": {"uri": "/data/x.npz"}}),
    ("uri-gs", {"dataset": {"uri": "gs://bucket/data/x.npz"}}),
    ("uri-file", {"dataset": {"uri": "file:///data/x.npz"}}),
    ("splits-auto", ds(trainSplit="auto", validationSplit="auto")),
    ("uri-gs-image-folder", {"dataset": {"uri": "gs://bucket/pets"}}),
    ("uri-gs-image-folder-slash", {"dataset": {"uri": "gs://my-bucket/data/pets/"}}),
    ("uri-gs-shards-brace", {"dataset": {"uri": "gs://bucket/cifar/train-{000000..000031}.tar"}}),
    ("uri-gs-shards-glob", {"dataset": {"uri": "gs://bucket/cifar/*.tar"}}),
    ("uri-local-shards-brace", {"dataset": {"uri": "/data/shards/train-{0000..0009}.tar"}}),
    ("uri-file-shard", {"dataset": {"uri": "file:///data/shards/train-0000.tar"}}),
    ("uri-gs-parquet", {"dataset": {"uri": "gs://bucket/beans/data/train-00000-of-00001.parquet"}}),
    ("uri-hf-saved-folder", {"dataset": {"uri": "file:///data/beans-saved"}}),
    ("uri-relative-folder", {"dataset": {"uri": "data/pets"}}),
    ("budget-at-the-limits", {"budget": {"batchSize": 65536, "maxValidationExamples": 10**7}}),
]
GOOD_MTS: list[tuple[str, dict[str, Any]]] = [
    ("store-var-lib", store("file:///var/lib/mutask/tiny")),
    ("store-trailing-slash", store("file:///data/store/")),
    ("store-home", store("file:///home/store")),
    ("store-tmpfoo-is-not-tmp", store("file:///tmpfoo/x")),
    ("store-nested-in-the-pods-tmp", store("file:///tmp/store")),  # a mount inside the emptyDir
    ("store-gs-bucket", {"storage": {"uri": "gs://bucket"}}),
    ("store-gs-prefix", {"storage": {"uri": "gs://my.bucket/a/b-c_d"}}),
    ("b16-224", {"rootModel": {"preset": "b16", "imageSize": 224}}),
    ("mu-small-28", {"rootModel": {"preset": "mu-small", "imageSize": 28}}),
    ("weights-gs", {"rootModel": {"weightsURI": "gs://bucket/w.safetensors"}}),
    ("bootstrap-labels", boot(labels=[0, 1, 2])),
    ("bootstrap-splits-auto", boot(trainSplit="auto", validationSplit="auto")),
    ("bootstrap-gs-shards", boot(uri="gs://bucket/cifar/train-{000000..000031}.tar")),
]
