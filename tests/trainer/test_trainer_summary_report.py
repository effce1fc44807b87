"""summary.py and report.py on a small System built with the pure core and fake manifests."""

from __future__ import annotations

from pathlib import Path

from trainer_testutil import rooted_system

from mutask.trainer.demo.report import write_report
from mutask.trainer.demo.summary import system_table, task_rows
from mutask.trainer.evolution import ROOT_TASK, System
from mutask.trainer.iteration.verify import Verification


def _manifests(system: System) -> dict[str, dict]:
    out: dict[str, dict] = {ROOT_TASK: {"iteration": 0, "test_accuracy": None, "history": []}}
    for i, task in enumerate(system.tasks):
        out[task] = {
            "iteration": i + 1,
            "test_accuracy": 0.8125,
            "history": [{"seconds": 1.0}, {"seconds": 12.5 + i}],
        }
    return out


def test_system_table_has_a_row_per_task_and_the_totals() -> None:
    system = rooted_system()
    table = system_table(system, _manifests(system))
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["task", "it", "val"]
    rows = {line.split()[0]: line for line in lines[2:-2]}
    assert list(rows) == [ROOT_TASK, "digits", "private:x"]
    assert "0.7500" in rows["digits"] and "0.8125" in rows["digits"] and "12.5" in rows["digits"]
    total = sum(c.num_params for c in system.components.values())
    assert lines[-1] == (
        f"system: 2 task(s) + root, {len(system.components)} components, {total:,} parameters"
    )


def test_task_rows_split_parameters_into_added_and_shared() -> None:
    system = rooted_system()
    rows = {r["task"]: r for r in task_rows(system, _manifests(system))}
    digits_head = system.components["digits~1/head"].num_params
    assert rows["digits"]["params_added"] == digits_head
    assert rows["digits"]["params_total"] == sum(
        system.components[c].num_params for c in system.best["digits"].component_ids
    )
    assert rows["digits"]["shares_with"] == [ROOT_TASK, "private:x"]
    assert rows["private:x"]["layers"] == 2 and rows["private:x"]["adapters"] == 0
    assert rows[ROOT_TASK]["seconds"] is None  # no history yet


def test_write_report_creates_markdown_and_two_pngs(tmp_path: Path) -> None:
    system = rooted_system()
    root = system.root_params()
    timeline = [
        {"step": "digits", "total_params": root + 100, "tasks": 1},
        {"step": "private:x", "total_params": root + 900, "tasks": 2},
    ]
    checks = [
        Verification("digits", True, [], 0.8125, 0.8125, True),
        Verification("private:x", False, ["private:x~1/head"], 0.8, 0.7, False),
    ]
    out = write_report(tmp_path / "report", system, _manifests(system), timeline, checks, 42.0)
    assert out == tmp_path / "report" / "report.md"
    text = out.read_text()
    assert "| digits | yes | 0.8125 | 0.8125 | True |" in text
    assert "| private:x | NO | 0.8 | 0.7 | False |" in text
    assert "system: 2 task(s) + root" in text
    for png in ("parameter_growth.png", "sharing_graph.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000
        assert f"]({png})" in text
