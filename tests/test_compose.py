"""docker-compose.yml: valid by the Compose Specification, and its topology consistent.

Where the `docker compose` client is installed, `docker compose config` checks the file (both
profiles); everywhere the file is validated against the Compose Specification's JSON schema
(vendored in ops/compose/schema with its license). The Docker engine is not needed: nothing starts.
"""

from __future__ import annotations

import copy
import json
import subprocess

import jsonschema
import pytest
import yaml

from tests.monitoring_files import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA = jsonschema.Draft7Validator(json.loads((REPO / "ops" / "compose" / "schema" / "compose-spec.json").read_text()))
PROMETHEUS = yaml.safe_load((REPO / "ops" / "compose" / "prometheus.yml").read_text())
HMAS_IMAGE = "hma-streams:local"


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def hmas_services(model: dict) -> dict[str, dict]:
    return {name: s for name, s in model["services"].items() if s.get("image") == HMAS_IMAGE}


def _compose_client() -> bool:
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


def test_compose_file_follows_the_compose_specification():
    SCHEMA.validate(compose())


def test_the_schema_check_rejects_a_broken_file():
    broken = copy.deepcopy(compose())
    broken["services"]["worker"]["replicas"] = 2  # belongs under deploy:
    with pytest.raises(jsonschema.ValidationError):
        SCHEMA.validate(broken)


@pytest.mark.skipif(not _compose_client(), reason="the `docker compose` client is not installed here; "
                                                   "the schema test checks the file")
@pytest.mark.parametrize("profile", [[], ["--profile", "shards"]])
def test_docker_compose_config_accepts_the_file(profile):
    done = subprocess.run(["docker", "compose", "-f", str(COMPOSE_FILE), *profile, "config", "--quiet"],
                          capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HMAS_INDEX_SHARDS": "2"})
    assert done.returncode == 0, done.stderr


def test_services_form_the_documented_topology():
    model = compose()
    services = hmas_services(model)
    assert {"worker", "worker-replica", "api", "fetcher"} <= set(services)
    assert {"kafka", "prometheus", "grafana"} <= set(model["services"])
    for name, service in services.items():
        assert service["environment"]["HMAS_INDEX_SHARDS"] == "${HMAS_INDEX_SHARDS:-1}", name
        assert service["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092", name
    recent = [n for n, s in services.items() if s["command"][0] == "worker" and "--shard" not in s["command"]
              and s["environment"].get("HMAS_RECENT_ENABLED", "1") != "0"]
    assert recent == ["worker"], "the ring of recent hashes runs on exactly one worker"


def test_shards_profile_has_one_worker_per_shard():
    shards = {n: s for n, s in hmas_services(compose()).items() if "shards" in s.get("profiles", [])}
    assert len(shards) >= 2
    for k in range(len(shards)):
        assert shards[f"shard-{k}"]["command"] == ["worker", "--shard", str(k)]


def test_prometheus_scrapes_every_hmas_service_and_compose_mounts_existing_files():
    model = compose()
    names_by_job = {job["job_name"]: {n for sd in job["dns_sd_configs"] for n in sd["names"]}
                    for job in PROMETHEUS["scrape_configs"]}
    workers = {n for n, s in hmas_services(model).items() if s["command"][0] == "worker"}
    assert names_by_job["hmas-worker"] == workers
    assert names_by_job["hmas-api"] == {"api"} and names_by_job["hmas-fetcher"] == {"fetcher"}
    for service in model["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), source
