"""Settings: defaults run locally; a file overrides defaults; the environment overrides the file."""

import pytest

from pipeline.config import load_settings


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
