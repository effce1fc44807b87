"""Fixtures for tests/chart (defined in chart_support.py and chart_scenarios.py; see
chart_support's docstring for tool lookup)."""

from chart_scenarios import scenario  # noqa: F401  (fixtures are found by name)
from chart_support import (  # noqa: F401
    helm,
    kubernetes_validate,
    prometheus,
    prometheus_bin,
    promtool,
)
