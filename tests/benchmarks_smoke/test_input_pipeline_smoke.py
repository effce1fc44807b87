"""Smoke run of the input-pipeline benchmark with a tiny folder (the figures are in
docs/benchmarks.md; this checks the benchmark runs and prints its ratio last)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_input_pipeline_benchmark_smoke() -> None:
    args = ["--small", "200", "--growth", "2", "--batches", "2", "--repeats", "1",
            "--train-steps", "1", "--batch-size", "16"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "benchmarks/input_pipeline.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "streamed by" in done.stderr and "cached=False" in done.stdout
    assert lines[-2].startswith("peak RSS 200 -> 400 images:")
    assert lines[-1].startswith("ratio pipeline/training images/s: ")
