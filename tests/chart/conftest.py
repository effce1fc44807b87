"""Fixtures for tests/chart (defined in chart_support.py; see its docstring for tool lookup)."""

from chart_support import (  # noqa: F401  (fixtures are found by name)
    helm,
    kubernetes_validate,
    prometheus,
    prometheus_bin,
    promtool,
)
