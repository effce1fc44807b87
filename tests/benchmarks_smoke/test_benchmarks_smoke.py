"""Smoke runs of the generation, quality, serving and multi-host benchmarks with tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mutask.trainer.data.builtin import data_dirs
from mutask.trainer.data.download import default_cache_dir

REPO = Path(__file__).resolve().parents[2]


def _fashion_mnist_offline() -> bool:
    folders = [*data_dirs("fashion-mnist"), default_cache_dir() / "fashion-mnist"]
    names = ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    return any((f / n).exists() for f in folders for n in names)


def _run(args: list[str]) -> str:
    """Run a benchmark script from the repository root (pytest-timeout is the only clock)."""
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_generation_benchmark_smoke() -> None:
    out = _run(
        [
            "benchmarks/generation.py",
            "-k",
            "3",
            "--rounds",
            "1",
            "--steps",
            "2",
            "--repeats",
            "1",
            "--threads",
            "2",
            "--workers",
            "2",
        ]
    )
    assert "results identical" in out
    assert "mutask lockstep + 2 candidates at once" in out  # one candidate per core
    assert "2 thread(s): max |param difference|" in out  # multi-threaded reference compared
    assert out.strip().splitlines()[-1].startswith("speed-up")


@pytest.mark.skipif(
    not _fashion_mnist_offline(),
    reason="the quality protocol's root is trained on Fashion-MNIST, which is not installed "
    "(apt-get install dataset-fashion-mnist, or set MUTASK_DATA_DIR)",
)
def test_quality_protocol_quick(tmp_path: Path) -> None:
    cache, out_dir = tmp_path / "cache", tmp_path / "out"
    args = ["benchmarks/quality.py", "--quick", "--cache", str(cache), "--out", str(out_dir)]
    out = _run([*args, "--quiet"])
    last = out.strip().splitlines()[-1]
    assert last.startswith("headline: mutask / fine-tune mean test accuracy"), last
    rows = json.loads((out_dir / "quality_rows.json").read_text())
    methods = {r["method"] for r in rows}
    assert methods == {
        "finetune",
        "head",
        "adapters",
        "scratch",
        "sequential",
        "mutask",
        "mutask-even",
        "mutask-s0.9",
        "mutask-s0.95",
        "mutask-s0.95-n8",
        "mutask-k4-e14",
        "mutask-s0.95-k4-e14",
        "mutask-quick",
        "mutask-thorough",
        "mutask-own-root",
        "mutask-on-own-root",
    }
    assert len({r["task"] for r in rows}) == 5
    # mutask's no-forgetting is verified by the engine (hashes, probe, re-evaluation)
    assert all(r["acc_own"] == r["acc_final"] for r in rows if r["method"].startswith("mutask"))
    # every mutask candidate's examples are counted: G * K * V * N * B of the quick budget
    assert {r["examples"] for r in rows if r["method"] == "mutask"} == {1 * 2 * 1 * 4 * 16}
    assert "Successive halving vs the even split" in out
    for name in ("per_task", "accuracy_vs_params", "accuracy_vs_examples"):
        assert (out_dir / f"quality_{name}.png").exists()
    # a second run reads every finished run from the cache and reports the same numbers
    again = _run([*args, "--quiet"])
    assert again.strip().splitlines()[-1] == last
    # the mutask side re-runs alone once its cached runs are deleted
    for folder in cache.glob("quick-*/mutask"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    alone = _run([*args, "--only", "mutask"])
    assert "mutask seed 0: introducing fashion-flip" in alone
    assert "finetune fashion-flip seed 0" not in alone  # baselines come from the cache
    assert alone.strip().splitlines()[-1] == last  # mutask is deterministic


def test_serve_benchmark_quick() -> None:
    """The serving benchmark end to end on a tiny system: servers, client process, figures."""
    out = _run(["benchmarks/serve.py", "--quick"])
    lines = out.strip().splitlines()
    assert lines[-1].startswith("memory ratio (one server / 2 processes")
    assert any(line.strip().startswith("2 processes") for line in lines)
    assert any("runs batched across tasks" in line for line in lines)


def test_multihost_benchmark_smoke() -> None:
    out = _run(
        ["benchmarks/multihost.py", "--generations", "1", "--candidates", "2", "--steps", "2"]
    )
    assert "same published result (bit-identical parameters): True" in out
    assert out.strip().splitlines()[-1].startswith("candidates/hour ratio (2 hosts / 1): ")
