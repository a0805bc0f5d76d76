"""`hmas up --workers N --shards S`: the compose topology as processes on one machine.

The plan is checked for both modes without starting anything; then `hmas up --workers 2` runs on
the test broker: both workers, the API and the fetcher answer /status, the two workers split the
input partitions in one consumer group, the Prometheus target files name every process, and
SIGTERM stops them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from ops.kafka.broker import free_port
from pipeline.topology import plan
from tests.pipeline_env import REPO, hmas, pipeline_env, settings_from, wait_until


def test_plan_of_replica_and_shard_mode(tmp_path):
    settings = settings_from({"HMAS_DATA_DIR": str(tmp_path), "HMAS_METRICS_PORT": "9000"})
    replicas = plan(settings, workers=2, shards=1)
    assert [p.name for p in replicas] == ["worker-0", "worker-1", "api", "fetcher"]
    assert [p.metrics_port for p in replicas] == [9000, 9001, settings.api_port, 9002]
    assert "HMAS_RECENT_ENABLED" not in replicas[0].env and replicas[1].env["HMAS_RECENT_ENABLED"] == "0"
    assert replicas[1].env["HMAS_DATA_DIR"] != str(tmp_path)

    sharded = plan(settings, workers=1, shards=3)
    assert [p.args for p in sharded if p.name.startswith("shard-")] == [
        ("worker", "--shard", "0"), ("worker", "--shard", "1"), ("worker", "--shard", "2")]
    assert {p.env["HMAS_INDEX_SHARDS"] for p in sharded} == {"3"}
    ports = [p.metrics_port for p in sharded]
    assert len(set(ports)) == len(ports)
    with pytest.raises(ValueError):
        plan(settings, workers=0, shards=1)


def _consecutive_free_ports(count: int) -> int:
    """A port p with p .. p + count - 1 all free now."""
    while True:
        base = free_port()
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue


def _status(url: str) -> int:
    try:
        return requests.get(url, timeout=5).status_code
    except requests.ConnectionError:
        return 0


def _uploads_partitions(metrics_url: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = requests.get(metrics_url, timeout=5).text
    except requests.ConnectionError:
        return set()
    return {s.labels["partition"] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "hmas_consumer_lag_records" and s.labels["topic"] == "uploads"}


@pytest.mark.kafka
def test_up_runs_two_workers_an_api_and_a_fetcher(kafka_broker, tmp_path):
    base, api_port = _consecutive_free_ports(3), free_port()
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_METRICS_PORT=str(base),
                       HMAS_API_PORT=str(api_port), HMAS_TOPIC_PARTITIONS="2")
    hmas(env, "topics", "create")
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "pipeline", "up", "--workers", "2"], cwd=REPO,
                              env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)

    def tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    workers = [f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"]
    fetcher = f"http://127.0.0.1:{base + 2}"
    try:
        for url in [*workers, fetcher, f"http://127.0.0.1:{api_port}"]:
            wait_until(lambda: _status(f"{url}/status") == 200, 120, f"{url}/status to answer 200", detail=tail)
        # One consumer group: each worker is assigned one of the two partitions of the uploads topic.
        wait_until(lambda: [_uploads_partitions(f"{w}/metrics") for w in workers] in ([{"0"}, {"1"}], [{"1"}, {"0"}]),
                   120, "the two workers to split the uploads partitions", detail=tail)
        targets_dir = tmp_path / "state" / "prometheus-targets"
        named = {job: [t["labels"]["process"] for t in json.loads((targets_dir / f"{job}.json").read_text())]
                 for job in ("worker", "api", "fetcher")}
        assert named == {"worker": ["worker-0", "worker-1"], "api": ["api"], "fetcher": ["fetcher"]}
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(90)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    assert up.returncode == 0, tail()
    for url in [*workers, fetcher]:
        assert _status(f"{url}/status/live") == 0, f"{url} still answers after hmas up stopped"
