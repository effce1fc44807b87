"""Smoke runs of the generation, quality and serving benchmarks with tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


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
        ],
    )
    assert "results identical" in out
    assert "mutask lockstep + 2 candidates at once" in out  # one candidate per core
    assert "2 thread(s): max |param difference|" in out  # multi-threaded reference compared
    assert out.strip().splitlines()[-1].startswith("speed-up")


def test_quality_suite_quick(tmp_path: Path) -> None:
    out = _run(
        [
            "benchmarks/quality.py",
            "--quick",
            "--no-fashion",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert out.strip().splitlines()[-1].startswith("headline vs fine-tune per task")
    records = json.loads((tmp_path / "quality_results.json").read_text())
    methods = {r["method"] for r in records}
    assert {"mutask s=1", "finetune", "head", "adapters", "sequential"} <= methods
    assert len({r["task"] for r in records}) >= 6
    assert all(r["acc_own"] == r["acc_final"] for r in records if r["method"].startswith("mutask"))
    assert (tmp_path / "quality_accuracy_vs_params.png").exists()
    assert (tmp_path / "quality_params_vs_tasks.png").exists()
    tables = _run(
        ["benchmarks/quality.py", "--from-results", str(tmp_path / "quality_results.json")],
    )
    assert "| mutask s=1 |" in tables and "Per task, mean over seeds" in tables


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
