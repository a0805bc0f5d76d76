"""Reading one key's records between two times: from the offsets for the start time, stopping past
the end time, over every partition; never the whole topic."""

import pytest
from confluent_kafka import Producer

from pipeline import topics as T
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.state.log_reader import read_key_near
from pipeline.uploads import new_upload
from tests.pipeline_env import hmas, pipeline_env, settings_from

pytestmark = pytest.mark.kafka
HOUR_MS = 3_600_000


def produce_at(settings: Settings, records: list[tuple[str, int]]) -> None:
    """Uploads (key, create time) with a pdq value that numbers them; every delivery checked."""
    failed: list[str] = []
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for i, (key, at) in enumerate(records):
        record = new_upload(key, "photo", signals={"pdq": f"{i:02x}" * 32})
        producer.produce(T.UPLOADS.name(settings), key=key, value=T.UPLOADS.codec.encode(record), timestamp=at,
                         on_delivery=lambda err, msg: failed.append(str(err)) if err else None)
    assert producer.flush(30) == 0 and failed == []


def test_only_the_keys_records_within_the_times_are_read(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state")
    hmas(env, "topics", "create")
    settings = settings_from(env)
    t0 = now_ms() - 3 * HOUR_MS  # past record times the broker takes, within the topic's retention
    produce_at(settings, [("a", t0), ("b", t0 + 1), ("a", t0 + HOUR_MS), ("a", t0 + 2 * HOUR_MS)])

    def numbers(records):
        return [r["signals"]["pdq"][:2] for r in records]

    assert numbers(read_key_near(settings, T.UPLOADS, "a", t0, t0 + HOUR_MS + 1)) == ["00", "02"]
    assert numbers(read_key_near(settings, T.UPLOADS, "a", t0 + 1, t0 + 3 * HOUR_MS)) == ["02", "03"]
    assert numbers(read_key_near(settings, T.UPLOADS, "b", t0, t0 + 3 * HOUR_MS)) == ["01"]
    assert read_key_near(settings, T.UPLOADS, "a", t0 + 3 * HOUR_MS, now_ms()) == []
    assert read_key_near(settings, T.UPLOADS, "c", t0, t0 + 3 * HOUR_MS) == []
