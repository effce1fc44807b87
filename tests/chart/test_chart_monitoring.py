"""The Grafana dashboard and the alerts: structure, metric contract, and PromQL checked by a
real Prometheus (parse errors answer HTTP 400) and promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART_DIR, METRICS, NAMESPACE, RELEASE, Prometheus, render

DASHBOARD_PATH = CHART_DIR / "dashboards" / "mutask.json"
DASHBOARD = json.loads(DASHBOARD_PATH.read_text())
PROMTOOL_TESTS = Path(__file__).parent / "promtool"
ALL_RULES_ON = {"metrics": {"prometheusRule": {"enabled": True}}}

# Grafana's built-in and dashboard variables, replaced by valid PromQL before validation.
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "${task}": ".*",
    "$task": ".*",
}
METRIC_NAME = re.compile(r"\bmutask_[a-z0-9_]+")


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs() -> dict[str, str]:
    exprs = {}
    for p in panels(DASHBOARD):
        for t in p.get("targets", []):
            exprs[f"{p['title']}/{t['refId']}"] = t["expr"]
    return exprs


def grafana_to_promql(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def variable(name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == name]
    assert len(found) == 1, f"dashboard variable {name!r}"
    return found[0]


@pytest.fixture(scope="module")
def rules(helm: str) -> dict[str, Any]:
    """The rendered PrometheusRule's groups, as a Prometheus rule file."""
    pr = render(helm, ALL_RULES_ON).one("PrometheusRule", RELEASE, NAMESPACE)
    return {"groups": pr["spec"]["groups"]}


def rule_exprs(rules: dict[str, Any]) -> dict[str, str]:
    return {r.get("alert") or r["record"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def metric_base(name: str) -> str:
    """The contract name a series name belongs to (histogram series carry a suffix)."""
    if name in METRICS:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base) == "histogram":
            return base
    return name


# ------------------------------------------------------------------------ dashboard


def test_dashboard_structure() -> None:
    assert DASHBOARD["schemaVersion"] >= 39
    assert DASHBOARD["uid"] and DASHBOARD["title"]
    assert DASHBOARD.get("id") is None, "provisioned dashboards must not carry a database id"
    ds = variable("datasource")
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    task = variable("task")
    assert task["type"] == "query" and task["includeAll"] and task["multi"]
    assert task["allValue"] == ".*", "All must expand to a regex that matches every task"
    assert task["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in panels(DASHBOARD)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(DASHBOARD):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        assert p.get("description"), f"panel {p['title']!r} has no description"
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"]
            if "mutask_trainer_" in t["expr"]:
                assert 'task=~"$task"' in t["expr"], f"{p['title']} ignores the task variable"


def test_dashboard_panels_do_not_overlap() -> None:
    cells: dict[tuple[int, int], str] = {}
    for p in panels(DASHBOARD):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]


def test_dashboard_covers_the_metric_contract() -> None:
    used = {metric_base(m) for e in dashboard_exprs().values() for m in METRIC_NAME.findall(e)}
    assert set(METRICS) - used == set(), f"metrics without a panel: {sorted(set(METRICS) - used)}"


def test_dashboard_and_rules_use_only_contract_metrics(rules: dict[str, Any]) -> None:
    """Catches misspelt metric names, which PromQL itself accepts silently."""
    exprs = [
        *dashboard_exprs().values(),
        *rule_exprs(rules).values(),
        variable("task")["definition"],
    ]
    unknown = {m for e in exprs for m in METRIC_NAME.findall(e) if metric_base(m) not in METRICS}
    assert not unknown, f"not in the metric contract: {sorted(unknown)}"
    for e in exprs:
        for m in METRIC_NAME.findall(e):
            kind = METRICS[metric_base(m)]
            if kind == "histogram":
                assert m != metric_base(m), f"histogram {m} used without _bucket/_sum/_count"
            if kind == "counter":
                assert re.search(rf"(rate|increase)\(\s*{m}\b", e) or f"count({m})" in e, (
                    f"counter {m} used without rate()/increase(): {e}"
                )


# ----------------------------------------------------------- PromQL, real Prometheus


def test_prometheus_rejects_bad_promql(prometheus: Prometheus) -> None:
    """The validation below is meaningful: a parse error is a 400 with errorType bad_data."""
    status, body = prometheus.query("sum by (task (rate(mutask_trainer_step_seconds_count[5m]))")
    assert status == 400 and body["errorType"] == "bad_data", body
    status, body = prometheus.query("up")
    assert status == 200 and body["status"] == "success", body


@pytest.mark.parametrize("name", sorted(dashboard_exprs()))
def test_dashboard_promql_is_valid(prometheus: Prometheus, name: str) -> None:
    expr = grafana_to_promql(dashboard_exprs()[name])
    status, body = prometheus.query(expr)
    assert status == 200 and body["status"] == "success", f"{name}: {expr}\n{body}"


def test_task_variable_query_is_valid(prometheus: Prometheus) -> None:
    definition = variable("task")["definition"]
    m = re.fullmatch(r"label_values\((.+),\s*task\)", definition)
    assert m, definition
    status, body = prometheus.query(m.group(1))
    assert status == 200, body


def test_rule_promql_is_valid(prometheus: Prometheus, rules: dict[str, Any]) -> None:
    for name, expr in rule_exprs(rules).items():
        status, body = prometheus.query(expr)
        assert status == 200 and body["status"] == "success", f"{name}: {expr}\n{body}"


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules(promtool: str, rules: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_promtool_alert_unit_tests(promtool: str, rules: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    for test_file in sorted(PROMTOOL_TESTS.glob("*_test.yaml")):
        shutil.copy(test_file, tmp_path / test_file.name)
        proc = subprocess.run(
            [promtool, "test", "rules", test_file.name],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, f"{test_file.name}:\n{proc.stdout}{proc.stderr}"
