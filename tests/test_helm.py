"""The Helm chart (ops/helm/hma-streams), rendered by `helm template` with no cluster: every
manifest valid against the Kubernetes JSON schemas (kubernetes-validate, strict: no unknown
fields), and the deployment it describes: worker StatefulSets with a state volume, probes on
/status, memory sized from the benchmarks, a PodDisruptionBudget each, config and secrets, and in
shard mode one StatefulSet per shard.
"""

from __future__ import annotations

import copy
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.monitoring_files import REPO, go_tool

CHART = REPO / "ops" / "helm" / "hma-streams"
KUBERNETES_VERSION = "1.33"


def render(*sets: str) -> list[dict]:
    args = [go_tool("helm"), "template", "hmas", str(CHART)]
    for value in sets:
        args += ["--set", value]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def container(workload: dict) -> dict:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def memory_mi(workload: dict) -> int:
    return int(container(workload)["resources"]["requests"]["memory"].removesuffix("Mi"))


@pytest.mark.parametrize("sets", [(), ("shards.count=4", "worker.replicas=3"),
                                  ("secrets.existingSecret=prod-secrets", "fetcher.enabled=false")])
def test_every_rendered_manifest_follows_the_kubernetes_schema(sets):
    manifests = render(*sets)
    assert manifests
    for manifest in manifests:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_rejects_an_unknown_field():
    worker = copy.deepcopy(by_kind(render(), "StatefulSet")["hmas-hma-streams-worker"])
    worker["spec"]["replica"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_helm_lint_passes():
    done = subprocess.run([go_tool("helm"), "lint", "--strict", str(CHART)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_replica_mode_workers_api_probes_volumes_and_budgets():
    manifests = render()
    worker = by_kind(manifests, "StatefulSet")["hmas-hma-streams-worker"]
    assert worker["spec"]["replicas"] == 2
    assert [c["metadata"]["name"] for c in worker["spec"]["volumeClaimTemplates"]] == ["state"]
    assert {"name": "state", "mountPath": "/data"} in container(worker)["volumeMounts"]
    assert container(worker)["readinessProbe"]["httpGet"] == {"path": "/status", "port": "metrics"}
    assert container(worker)["livenessProbe"]["httpGet"] == {"path": "/status/live", "port": "metrics"}
    # a long bank view load keeps the pod unready, never restarts it
    assert container(worker)["startupProbe"]["httpGet"] == {"path": "/status/live", "port": "metrics"}
    assert "HMAS_RECENT_ENABLED=0" in container(worker)["args"][0]  # the ring on pod 0 only
    api = by_kind(manifests, "Deployment")["hmas-hma-streams-api"]
    assert container(api)["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http"}
    assert by_kind(manifests, "Service")["hmas-hma-streams-api"]["spec"]["ports"][0]["targetPort"] == "http"
    budgets = by_kind(manifests, "PodDisruptionBudget")
    assert set(budgets) == {"hmas-hma-streams-worker", "hmas-hma-streams-api"}
    assert not by_kind(manifests, "StatefulSet").keys() - {"hmas-hma-streams-worker"}
    config = by_kind(manifests, "ConfigMap")["hmas-hma-streams-config"]["data"]
    assert config["HMAS_INDEX_SHARDS"] == "1" and config["HMAS_METRICS_HOST"] == "0.0.0.0"
    secret = by_kind(manifests, "Secret")["hmas-hma-streams-secrets"]
    assert {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "HMAS_API_TOKEN", "HMAS_SECRET_KEY"} <= set(secret["stringData"])
    for workload in [worker, api]:
        refs = [next(iter(ref.values()))["name"] for ref in container(workload)["envFrom"]]
        assert refs == ["hmas-hma-streams-config", "hmas-hma-streams-secrets"]


def test_memory_requests_follow_the_benchmarks_sizing():
    # BENCHMARKS.md: a worker holding 10M signals is about 2.4 GB resident; 600 Mi + 190 Mi per million.
    at_10m = render()
    assert memory_mi(by_kind(at_10m, "StatefulSet")["hmas-hma-streams-worker"]) == 600 + 190 * 10
    at_100m = render("sizing.bankSignalsMillions=100", "shards.count=4")
    statefulsets = by_kind(at_100m, "StatefulSet")
    assert memory_mi(statefulsets["hmas-hma-streams-worker"]) == 600 + 190 * 100  # main workers hold every signal
    # shard workers: 600 Mi + 226 Mi per million of their share (4 shards of 7.5M measured at 2.27-2.30 GB)
    assert memory_mi(statefulsets["hmas-hma-streams-shard-0"]) == 600 + 226 * 25
    limit = container(statefulsets["hmas-hma-streams-shard-0"])["resources"]["limits"]["memory"]
    assert limit == f"{int((600 + 226 * 25) * 1.5)}Mi"


def test_shard_mode_is_one_statefulset_per_shard():
    manifests = render("shards.count=3", "shards.replicasPerShard=2")
    statefulsets = by_kind(manifests, "StatefulSet")
    shards = {name: s for name, s in statefulsets.items() if "-shard-" in name}
    assert sorted(shards) == [f"hmas-hma-streams-shard-{k}" for k in range(3)]
    for k in range(3):
        shard = shards[f"hmas-hma-streams-shard-{k}"]
        assert shard["spec"]["replicas"] == 2
        assert container(shard)["args"][0].endswith(f"hmas worker --shard {k}")
        selector = shard["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == f"shard-{k}"
        assert shard["spec"]["volumeClaimTemplates"]
    assert len(by_kind(manifests, "PodDisruptionBudget")) == 2 + 3
    assert by_kind(manifests, "ConfigMap")["hmas-hma-streams-config"]["data"]["HMAS_INDEX_SHARDS"] == "3"


def test_an_existing_secret_replaces_the_charts_own():
    manifests = render("secrets.existingSecret=prod-secrets")
    assert not by_kind(manifests, "Secret")
    api = by_kind(manifests, "Deployment")["hmas-hma-streams-api"]
    assert {"secretRef": {"name": "prod-secrets"}} in container(api)["envFrom"]
