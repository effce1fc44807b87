"""Static checks of the container images (no Docker engine here: they are read, not built)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from chart_support import CHART_DIR, REPO_ROOT

TRAINER = REPO_ROOT / "trainer" / "Dockerfile"
OPERATOR = REPO_ROOT / "operator" / "Dockerfile"
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(path: Path) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per FROM."""
    result: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert m, rest
            result.append((m.group(1), m.group(2), []))
        elif result:
            result[-1][2].append((word, rest))
    return result


def final_user(stage_instructions: list[tuple[str, str]]) -> str | None:
    users = [rest for word, rest in stage_instructions if word == "USER"]
    return users[-1] if users else None


def assert_non_root(user: str | None, what: str) -> None:
    assert user, f"{what}: no USER instruction (would run as root)"
    uid = user.split(":")[0]
    assert uid not in ("root", "0"), f"{what}: runs as root"
    assert uid.isdigit(), f"{what}: USER should be numeric so runAsNonRoot can verify it"


# --------------------------------------------------------------------------- trainer


def test_trainer_variants() -> None:
    all_stages = stages(TRAINER)
    names = {name: (base, ins) for base, name, ins in all_stages if name}
    assert {"torch-cpu", "torch-cuda", "torch-tpu"} <= set(names)
    args = [rest for word, rest in instructions(TRAINER) if word == "ARG"]
    assert "VARIANT=cpu" in args, "VARIANT must default to cpu"
    final_base, final_name, _ = all_stages[-1]
    assert final_base == "torch-${VARIANT}" and final_name is None

    def run_text(stage: str) -> str:
        return " ".join(rest for word, rest in names[stage][1] if word in ("RUN", "ARG"))

    cpu = run_text("torch-cpu")
    assert names["torch-cpu"][0] == "${PYTHON_IMAGE}"
    assert "python:3.11-slim" in " ".join(args)
    assert "TORCH_VERSION=2.13.0" in cpu and "download.pytorch.org/whl/cpu" in cpu
    cuda_base = names["torch-cuda"][0]
    assert cuda_base.startswith("nvidia/cuda:") and "runtime" in cuda_base
    cuda = run_text("torch-cuda")
    assert "TORCH_VERSION=2.13.0" in cuda and "download.pytorch.org/whl/${TORCH_CUDA}" in cuda
    cuda_major_minor = re.search(r"nvidia/cuda:(\d+)\.(\d+)", cuda_base)
    assert (
        cuda_major_minor and f"TORCH_CUDA=cu{cuda_major_minor[1]}{cuda_major_minor[2]}" in cuda
    ), "torch CUDA wheels must match the base image's CUDA version"
    tpu = run_text("torch-tpu")
    assert '"torch-xla[tpu]==${TORCH_XLA_VERSION}"' in tpu
    assert ("ENV", "PJRT_DEVICE=TPU") in names["torch-tpu"][1]


def _xla_pins() -> dict[str, str]:
    """The `xla` extra of pyproject.toml: what CI's XLA venv installs and tests."""
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    pins = dict(req.split("==") for req in extras["xla"])
    assert set(pins) == {"torch", "torch-xla"}, extras["xla"]
    assert "torch-xla[tpu]==" + pins["torch-xla"] in extras["tpu"]
    assert "mutask[xla]" in extras["tpu"], "the tpu extra keeps the xla pins"
    return pins


def test_tpu_image_installs_exactly_what_the_ci_xla_venv_tests() -> None:
    pins = _xla_pins()
    (stage,) = [ins for _, name, ins in stages(TRAINER) if name == "torch-tpu"]
    args = dict(rest.split("=", 1) for word, rest in stage if word == "ARG")
    assert args == {"TORCH_VERSION": pins["torch"], "TORCH_XLA_VERSION": pins["torch-xla"]}
    run = " ".join(rest for word, rest in stage if word == "RUN")
    # torch first, the CPU build of the pinned version, then torch-xla with torch held there
    assert '"torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu' in run
    assert '"torch==${TORCH_VERSION}" "torch-xla[tpu]==${TORCH_XLA_VERSION}"' in run
    assert "torch==%s\\ntorch-xla==%s" in run and "/opt/venv/constraints.txt" in run
    _, _, final = stages(TRAINER)[-1]
    final_run = " ".join(rest for w, rest in final if w == "RUN")
    assert "extras=trainer,tpu" in final_run, "the tpu image installs mutask[trainer,tpu]"
    # CI's XLA venv reads the same extra (no second copy of the pins)
    script = (REPO_ROOT / ".ci" / "xla-venv.sh").read_text()
    assert 'extras["xla"]' in script and "--constraint" in script
    for name in pins:
        assert not re.search(rf"{name}==\d", script), f"{name} is pinned in pyproject.toml only"


def test_trainer_image_runtime() -> None:
    _, _, final = stages(TRAINER)[-1]
    user = final_user(final)
    assert_non_root(user, "trainer image")
    assert user == "65532:65532"
    assert int(user.split(":")[0]) == VALUES["trainer"]["runAsUser"], (
        "the chart's trainer.runAsUser must be the image's user"
    )
    words = [w for w, _ in final]
    assert "WORKDIR" in words
    assert words.index("WORKDIR") < words.index("USER")
    (entrypoint,) = [rest for w, rest in final if w == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["mutask"], "exec-form ENTRYPOINT, so signals reach mutask"
    (expose,) = [rest for w, rest in final if w == "EXPOSE"]
    assert expose == str(VALUES["trainer"]["metricsPort"]) == "9090"
    run = " ".join(rest for w, rest in final if w == "RUN")
    assert "[${extras}]" in run and "extras=trainer" in run, "installs mutask[trainer]"
    assert "--constraint /opt/venv/constraints.txt" in run, (
        "mutask must not replace the torch build"
    )


@pytest.mark.parametrize("path", [TRAINER, OPERATOR], ids=["trainer", "operator"])
def test_dockerfile_hygiene(path: Path) -> None:
    assert path.exists(), f"{path.relative_to(REPO_ROOT)} is missing"
    for word, rest in instructions(path):
        if word == "FROM":
            image = rest.split()[0]
            assert not image.endswith(":latest"), f"unpinned base image {image}"
            assert (
                ":" in image
                or "$" in image
                or image in {name for _, name, _ in stages(path) if name}
            ), f"base image without a tag: {image}"
        if word == "ADD":
            assert "http://" not in rest and "https://" not in rest, "ADD from a URL: use RUN"
        if word == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest or "PIP_NO_CACHE_DIR" in path.read_text()
        if word == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


# -------------------------------------------------------------------------- operator


def test_operator_image() -> None:
    assert OPERATOR.exists(), "operator/Dockerfile is missing"
    _, _, final = stages(OPERATOR)[-1]
    assert_non_root(final_user(final), "operator image")
    text = "\n".join(f"{w} {r}" for w, r in instructions(OPERATOR))
    assert not re.search(r"\btorch\b", text), "the operator image must not install torch"
    assert "[trainer" not in text and ",trainer" not in text, "mutask[trainer] pulls in torch"


def test_operator_starts_one_way() -> None:
    """The image runs `mutask operator` (mutask.operator.main.run), as the chart does
    (test_chart_render.test_operator_args_and_env_are_settings)."""
    _, _, final = stages(OPERATOR)[-1]
    (entrypoint,) = [rest for w, rest in final if w == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["mutask", "operator"]
    (cmd,) = [rest for w, rest in final if w == "CMD"]
    from mutask.operator.settings import load

    assert load(json.loads(cmd), {}).all_namespaces  # the default CMD parses
