"""A whole introduction on XLA through the CLI (`mutask introduce --device xla`), as pods run it.

On XLA's CPU backend with emulated chips: four chips (a worker per chip, each training one
candidate of every generation) publish and verify; the task they published verifies on XLA
(bf16 on the same device model: bit-exact); on one chip, a SIGTERM stops a run after its
first checkpoint (exit 75), the rerun resumes there and publishes exactly what the four
chips did: the same seed gives the same evolution for any chip count. The root is
bootstrapped on the CPU.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from xla_testutil import mutask, require_xla

from mutask.contract import ExitCode
from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, ModelConfig
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore

require_xla()
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

BUDGET = ["--generations", "2", "--candidates", "4", "--rounds", "1", "--steps", "2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding only a root (mu-tiny, 8 px), trained briefly on the CPU."""
    path = tmp_path_factory.mktemp("xla-root") / "store"
    cfg = IntroduceConfig(
        task="digits",
        dataset=DatasetConfig("digits"),
        store=str(path),
        budget=BudgetConfig(generations=1, candidates=1, validation_rounds=1, steps_per_round=20),
        model=ModelConfig("mu-tiny", image_size=8),
        bootstrap_root=True,
    )
    engine = Engine(
        SystemStore.open(str(path)),
        select_device("cpu", "float32"),
        progress_bars=False,
        log=lambda _: None,
    )
    bootstrap_root(engine, cfg)
    return path


def _introduce(store: Path, task: str, devices: int, *extra: str) -> subprocess.Popen[str]:
    args = ["introduce", "--device", "xla", "--store", str(store), "--task", task]
    args += ["--dataset", "digits", *BUDGET, "--quiet", *extra]
    return mutask(args, store.parent, devices, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    """Exit code, the printed result (the JSON after any log lines) and stdout + stderr."""
    out, err = proc.communicate()
    start = out.find("{\n")
    return proc.returncode, json.loads(out[start:]) if start >= 0 else {}, out + err


def _published(store: Path, task: str) -> dict[str, Any]:
    found = SystemStore.open(str(store)).read_manifest(task)
    assert found is not None, f"{task} was not published"
    m = found[0]
    return {
        "path": m["path"],
        "components": {cid: c["param_hash"] for cid, c in sorted(m["components"].items())},
        "score": m["score"],
        "test_accuracy": m["test_accuracy"],
        "device": (m["device_kind"], m["device_model"], m["precision"]),
    }


@pytest.fixture(scope="module")
def four_chips(root: Path) -> Path:
    """``digits`` introduced on four emulated chips, one worker and one candidate each."""
    store = root.parent.parent / "four-chips" / "store"
    shutil.copytree(root, store)
    code, out, err = _finish(_introduce(store, "digits", 4))
    assert code == ExitCode.OK, err
    assert out["no_forgetting_verified"] is True, err  # the root, on XLA
    for rank in range(1, 5):
        assert f"worker {rank}/4" in err
    return store


def test_four_chips_publish_on_xla_and_clear_the_exchange(four_chips: Path) -> None:
    published = _published(four_chips, "digits")
    assert published["device"] == ("xla", "xla CPU", "bfloat16")
    assert 0.0 <= published["test_accuracy"] <= 1.0
    leftovers = list((four_chips / "tasks" / "digits").glob("exchange/**/*.json"))
    assert leftovers == [], "the lead clears the candidate records once all workers are done"


def test_a_task_published_on_xla_verifies_bit_exact_on_xla(four_chips: Path) -> None:
    verify = mutask(
        ["verify", "--store", str(four_chips)],
        four_chips.parent,
        1,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = verify.communicate()
    assert verify.returncode == ExitCode.OK, out + err
    line = next(row for row in out.splitlines() if row.startswith("digits"))
    assert " ok " in line and "probe=True" in line and "not compared" not in line, out


def test_sigterm_then_resume_on_one_chip_publishes_what_four_chips_did(
    root: Path, four_chips: Path
) -> None:
    store = root.parent.parent / "one-chip" / "store"
    shutil.copytree(root, store)
    resume = store / "tasks" / "digits" / "resume.json"
    proc = _introduce(store, "digits", 1)
    while not resume.exists():  # the first generation's checkpoint (pytest-timeout bounds it)
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == ExitCode.PREEMPTED, err
    assert resume.exists() and not (store / "tasks" / "digits" / "manifest.json").exists()

    code, out, err = _finish(_introduce(store, "digits", 1))
    assert code == ExitCode.OK, err
    assert "resumed at generation 1" in err
    assert out["no_forgetting_verified"] is True, err
    # the same seed, the same evolution: one chip (interrupted, resumed) = four chips
    assert _published(store, "digits") == _published(four_chips, "digits")
