"""Helpers of the storage tests: tiny configs, running `mutask` in subprocesses, snapshots."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mutask.trainer.config import BudgetConfig, IntroduceConfig, ModelConfig
from mutask.trainer.store.objects import ObjectStore
from mutask.trainer.store.system_store import SystemStore

LEASE_TTL = "3"
TINY = [
    "--preset",
    "mu-tiny",
    "--image-size",
    "16",
    "--max-epochs",
    "0.25",
    "--candidates",
    "2",
    "--rounds",
    "1",
    "--quiet",
    "--device",
    "cpu",
]


def tiny_config(task: str, store: str) -> IntroduceConfig:
    return IntroduceConfig(
        task=task,
        store=store,
        device="cpu",
        model=ModelConfig(preset="mu-tiny", image_size=16, max_epochs=0.25),
        budget=BudgetConfig(generations=1, candidates=2, validation_rounds=1, steps_per_round=5),
    ).validate()


def copy_objects(src: ObjectStore, dst: ObjectStore) -> None:
    for info in src.list():
        data, _ = src.read(info.key)
        dst.write(info.key, data)


def cli() -> list[str]:
    """The `mutask` command line (MUTASK_TEST_CLI overrides it, for debugging)."""
    override = os.environ.get("MUTASK_TEST_CLI")
    return shlex.split(override) if override else [sys.executable, "-m", "mutask.trainer.cli"]


def env(**extra: str) -> dict[str, str]:
    """Single-threaded torch (same numerics in every run), a short lease for the tests."""
    out = dict(os.environ)
    out.update(
        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MUTASK_LEASE_TTL=LEASE_TTL, PYTHONUNBUFFERED="1"
    )
    out.update(extra)
    return out


def introduce_argv(
    store: str,
    task: str,
    *,
    transform: str | None,
    generations: int = 1,
    steps: int = 5,
    seed: int = 0,
    verify: bool = False,
) -> list[str]:
    argv = [
        *cli(),
        "introduce",
        "--store",
        store,
        "--task",
        task,
        "--seed",
        str(seed),
        "--generations",
        str(generations),
        "--steps",
        str(steps),
        *TINY,
    ]
    if transform:
        argv += ["--transform", transform]
    if not verify:
        argv.append("--no-verify")
    return argv


@dataclass
class Run:
    """A `mutask introduce` subprocess and its captured output files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait(self) -> int:
        """Its exit code, once it exits (pytest-timeout is the only clock)."""
        return self.proc.wait()

    @property
    def stdout(self) -> str:
        return self.out.read_text()

    @property
    def stderr(self) -> str:
        return self.err.read_text()


def start(argv: list[str], workdir: Path, name: str, **extra_env: str) -> Run:
    """Start a subprocess in ``workdir`` (never the repo root: `operator/` shadows stdlib)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(argv, cwd=workdir, stdout=fo, stderr=fe, env=env(**extra_env))
    return Run(proc, out, err)


def wait_for(predicate: Any, run: Run, poll: float = 0.05) -> None:
    """Poll until ``predicate()`` holds; fail if ``run`` exits first (no clock of its own:
    pytest-timeout bounds the test)."""
    while not predicate():
        if run.proc.poll() is not None:
            raise AssertionError(f"the run exited ({run.proc.returncode}) before: {run.stderr}")
        time.sleep(poll)


def final_state(store: SystemStore, task: str) -> dict[str, Any]:
    """What must be identical between an interrupted+resumed run and an uninterrupted one."""
    found = store.read_manifest(task)
    assert found is not None, f"task {task} not published"
    m = found[0]
    return {
        "iteration": m["iteration"],
        "path": m["path"]["id"],
        "components": {cid: c["param_hash"] for cid, c in sorted(m["components"].items())},
        "score": m["score"],
        "test_accuracy": m["test_accuracy"],
    }
