"""CI proves the README: `.ci/run` runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_readme_has_main_job_and_test_commands() -> None:
    blocks = shell_blocks((ROOT / "README.md").read_text())
    main, tests = blocks[0], blocks[1]
    assert "pip install torch==2.13.0" in main and main.endswith("mutask demo")
    assert "pip install -q torch==2.13.0" in tests and "&& pytest &&" in tests
    # then the XLA tests, in the XLA venv, on XLA's CPU backend with emulated chips
    assert tests.endswith('PJRT_DEVICE=CPU CPU_NUM_DEVICES=4 "$XLA_VENV/bin/pytest" tests/xla')
    assert "XLA_VENV=$(bash .ci/xla-venv.sh)" in tests
    # torch is installed before the project, so pip never pulls CUDA wheels
    assert main.index("torch==2.13.0") < main.index("pip install -e")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    tests = shell_blocks((ROOT / "README.md").read_text())[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci_lines
