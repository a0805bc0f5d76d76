"""The monitoring files as Prometheus and Grafana read them: promtool checks the alert rules and
runs their unit tests (ops/monitoring/alerts_test.yml), checks both Prometheus configurations;
the dashboard's panels all have queries, and the provisioning points at the dashboards' folder.

promtool is built by `make tools` into .tools/bin (tests/test_metrics.py checks that every metric
the rules and panels use is exported by a running process).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import yaml

from tests.monitoring_files import ALERT_RULES, DASHBOARDS, MONITORING, REPO, alert_rules, dashboard_panels, go_tool

REQUIRED_ALERTS = {"HmasConsumerLagGrowing", "HmasDeadLetterRate", "HmasIndexStale", "HmasSnapshotFailing",
                   "HmasWorkerRestarting", "HmasQuarantineRaised"}


def run(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=cwd)


def test_promtool_accepts_the_alert_rules():
    done = run(go_tool("promtool"), "check", "rules", str(ALERT_RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_unit_tests_pass():
    done = run(go_tool("promtool"), "test", "rules", "alerts_test.yml", cwd=MONITORING)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_accepts_both_prometheus_configs(tmp_path):
    promtool = go_tool("promtool")
    local = run(promtool, "check", "config", str(MONITORING / "prometheus.yml"))
    assert local.returncode == 0, local.stdout + local.stderr
    # The compose configuration finds alerts.yml beside it, as the compose file mounts it.
    shutil.copy(REPO / "ops" / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(ALERT_RULES, tmp_path / "alerts.yml")
    composed = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert composed.returncode == 0, composed.stdout + composed.stderr


def test_every_alert_the_runbook_promises_exists_and_is_explained():
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert REQUIRED_ALERTS <= set(rules)
    runbook = (REPO / "docs" / "operations.md").read_text()
    for name, rule in rules.items():
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{name.lower()}"
        assert f"### {name}" in runbook, f"docs/operations.md does not explain {name}"


def test_dashboard_panels_query_prometheus_and_provisioning_finds_them():
    panels = [panel for _, panel in dashboard_panels() if panel["type"] != "row"]
    assert len(panels) >= 20
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    ids = [panel["id"] for _, panel in dashboard_panels()]
    assert len(ids) == len(set(ids))
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "hmas.yml").read_text())
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./ops/monitoring/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    for path in DASHBOARDS.glob("*.json"):
        assert json.loads(path.read_text())["uid"]
