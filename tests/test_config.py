"""Settings: defaults run locally; a file overrides defaults; the environment overrides the file."""

import re

import pytest

from ops.kafka.broker import LocalBroker
from pipeline import topics as T
from pipeline.config import PROJECT_ROOT, Settings, load_settings


def test_defaults_use_the_local_broker(tmp_path):
    s = load_settings(env={}, config_file=tmp_path / "none.toml")
    assert s.uses_local_broker and s.bootstrap_servers == "127.0.0.1:9092"
    assert s.topic_prefix == "hma."


def test_file_then_environment(tmp_path):
    cfg = tmp_path / "hmas.toml"
    cfg.write_text('topic_prefix = "x."\nfetch_max_bytes = 10\nfetch_allow_hosts = ["10.0.0.0/8"]\n')
    s = load_settings(env={"HMAS_FETCH_MAX_BYTES": "20", "KAFKA_BOOTSTRAP_SERVERS": "k:1"}, config_file=cfg)
    assert (s.topic_prefix, s.fetch_max_bytes, s.fetch_allow_hosts) == ("x.", 20, ("10.0.0.0/8",))
    assert s.bootstrap_servers == "k:1" and not s.uses_local_broker


def test_unknown_keys_in_the_file_are_an_error(tmp_path):
    cfg = tmp_path / "hmas.toml"
    cfg.write_text("topic_prefx = 'typo.'\n")
    with pytest.raises(ValueError, match="topic_prefx"):
        load_settings(env={}, config_file=cfg)


def test_every_size_limit_follows_max_message_bytes(tmp_path):
    s = load_settings(env={"HMAS_MAX_MESSAGE_BYTES": "1000"}, config_file=tmp_path / "none.toml")
    sizes = {spec.suffix: int(spec.config(s)["max.message.bytes"]) for spec in T.ALL_TOPICS}
    assert sizes.pop("dead-letters") == s.dead_letter_max_bytes == 2000
    assert set(sizes.values()) == {1000}
    assert s.max_request_bytes > s.dead_letter_max_bytes  # a producer can send the largest dead letter

    broker = LocalBroker(tmp_path / "kafka", message_max_bytes=s.max_request_bytes)
    broker.data_dir.mkdir()
    broker._write_config()
    written = dict(line.split("=", 1) for line in broker.config_file.read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    assert written["message.max.bytes"] == written["replica.fetch.max.bytes"] == str(s.max_request_bytes)


def test_the_compose_broker_accepts_what_the_default_producers_send():
    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    [limit] = re.findall(r"KAFKA_MESSAGE_MAX_BYTES: (\d+)", compose)
    assert int(limit) == Settings().max_request_bytes


def test_a_local_cluster_is_bootstrapped_from_every_node_and_topics_take_its_replication(tmp_path):
    s = load_settings(env={"HMAS_KAFKA_BROKERS": "3", "HMAS_TOPIC_REPLICATION": "3", "HMAS_TOPIC_MIN_ISR": "2"},
                      config_file=tmp_path / "none.toml")
    assert s.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert s.local_kafka_ports == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert {spec.config(s)["min.insync.replicas"] for spec in T.ALL_TOPICS} == {"2"}
    with pytest.raises(ValueError, match="min ISR"):
        load_settings(env={"HMAS_TOPIC_MIN_ISR": "2"}, config_file=tmp_path / "none.toml")


def test_the_api_event_loop_and_switch_interval_are_checked(tmp_path):
    for env, wrong in (({"HMAS_API_EVENT_LOOP": "tornado"}, "api_event_loop"),
                       ({"HMAS_API_SWITCH_INTERVAL_MS": "0"}, "api_switch_interval_ms")):
        with pytest.raises(ValueError, match=wrong):
            load_settings(env=env, config_file=tmp_path / "none.toml")
