"""The monitoring and deployment files as data, for the tests: docs/metrics.md's tables, the PromQL
of the Grafana dashboards and of the alert rules, the metric names an expression uses; and the
Go-built checkers (promtool, helm) that `make tools` puts in .tools/bin.

Test modules import from here (and from pipeline_env), never from one another.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
METRICS_DOC = REPO / "docs" / "metrics.md"
MONITORING = REPO / "ops" / "monitoring"
ALERT_RULES = MONITORING / "alerts.yml"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
TOOLS = REPO / ".tools" / "bin"


def go_tool(name: str) -> str:
    """A checker `make tools` builds; in CI (CI=true) its absence fails the test, elsewhere it skips."""
    path = TOOLS / name if (TOOLS / name).exists() else shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: `make tools` builds it into .tools/bin")
        pytest.skip(f"{name} is not built: run `make tools`")
    return str(path)


@dataclass(frozen=True)
class DocumentedMetric:
    type: str
    labels: tuple[str, ...]
    processes: tuple[str, ...]


def documented_metrics() -> dict[str, DocumentedMetric]:
    """Every row of docs/metrics.md's tables: | `name` | type | `labels` | processes | meaning |."""
    found: dict[str, DocumentedMetric] = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 5 or not re.fullmatch(r"`[a-z_:]+`", cells[0]):
            continue
        name = cells[0].strip("`")
        assert name not in found, f"{name} is documented twice"
        found[name] = DocumentedMetric(
            type=cells[1],
            labels=tuple(re.findall(r"`(\w+)`", cells[2])),
            processes=tuple(p.strip() for p in cells[3].split(",") if p.strip()),
        )
    return found


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERT_RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard_panels() -> list[tuple[str, dict]]:
    """(dashboard file, panel) for every panel of every provisioned dashboard, rows' panels included."""
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out += [(path.name, p) for p in [panel, *panel.get("panels", [])]]
    return out


def monitoring_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and every alert rule."""
    exprs = [(f"{name}: {panel['title']}", target["expr"])
             for name, panel in dashboard_panels() for target in panel.get("targets", [])]
    exprs += [(f"alerts.yml: {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return exprs


PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right", "inf", "nan"}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, label matchers, grouping labels,
    ranges, Grafana variables and keywords left out)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", " ", expr)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr):
        word, call = match.group(1), match.group(2)
        if not call and word.lower() not in PROMQL_KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", word):
            names.add(word)
    return names
