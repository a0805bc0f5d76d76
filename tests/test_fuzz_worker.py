"""A burst of bad records on every topic the worker reads, through a real worker and broker: each
one lands in hma.dead-letters with a reason and the stage that refused it, and the worker keeps
matching the uploads that follow."""

from __future__ import annotations

import json
import random

import pytest

from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from schemas.codec import AVRO_MAGIC
from tests.pipeline_env import WorkerProcess, collect_until, hmas, pipeline_env, random_pdq, settings_from

pytestmark = pytest.mark.kafka

STAGE_OF = {T.UPLOADS: "hasher", T.HASHES: "matcher", T.FEEDBACK: "feedback", T.RETRO_MATCHES: "actioner"}


def bad_values(spec: T.TopicSpec, rng: random.Random) -> list[bytes | None]:
    """Values no codec accepts: each kind of malformed input a producer can write, and random bytes."""
    header = spec.codec.header
    fixed = [
        None, b"", b"   ", b"null", b"[]", b'"a string"', b"42", b"{", b'{"content_id": ', b"\xff\xfe\x00\x01",
        b'{"content_id": "x"}\x00trailing', json.dumps({"unrelated": True}).encode(),
        json.dumps({"content_id": 7, "content_type": ["photo"]}).encode(), b"[" * 5000 + b"]" * 5000,
        json.dumps({"content_id": "x", "content_type": "photo", "metadata": {"k": {"deep": 1}}}).encode(),
        '{"content_id": "\udcff"}'.encode("utf-8", "surrogatepass"), b'{"content_id": NaN}',
        AVRO_MAGIC, AVRO_MAGIC + b"\x00" * 8 + b"\x02a", header, header + b"\xff" * 40, header + b"\x80" * 12,
    ]
    randoms = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) for _ in range(40)]
    return fixed + [raw for raw in randoms if raw[:1] not in (b"{", AVRO_MAGIC[:1])]


def invalid_uploads() -> list[bytes]:
    """Uploads that decode but cannot be processed: no content, two kinds of content, bad base64,
    signals of the wrong length or type."""
    upload = {"content_id": "x", "content_type": "photo", "metadata": {}}
    return [json.dumps({**upload, **extra}).encode() for extra in (
        {}, {"url": "http://127.0.0.1/x", "signals": {"pdq": "0" * 64}}, {"content_b64": "***not base64***"},
        {"signals": {"pdq": "abc"}}, {"signals": {"nosuchtype": "00"}}, {"content_id": "   ", "signals": {"pdq": "0" * 64}},
        {"content_b64": ""}, {"url": "file:///etc/passwd"}, {"content_type": "video", "signals": {"pdq": "0" * 64}},
    )]


def test_a_burst_of_bad_records_all_become_dead_letters_and_matching_goes_on(kafka_broker, tmp_path):
    env = pipeline_env(kafka_broker.bootstrap, tmp_path / "state", HMAS_FETCH_TIMEOUT_S="2")
    settings = settings_from(env)
    hmas(env, "topics", "create")
    banked = random_pdq()
    hmas(env, "bank", "create", "FUZZ", "--action", "remove")
    hmas(env, "bank", "add", "FUZZ", "--signal", f"pdq:{banked}")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        rng = random.Random(14)
        client = Client(settings)
        sent: dict[str, T.TopicSpec] = {}
        for spec in STAGE_OF:
            values = bad_values(spec, rng) + (invalid_uploads() if spec is T.UPLOADS else [])
            for i, value in enumerate(values):
                key = f"bad-{spec.suffix}-{i}"
                client.produce_raw(spec, key, value)
                sent[key] = spec
        client.produce(T.UPLOADS, "after-the-burst", new_upload("after-the-burst", "photo", signals={"pdq": banked}))
        client.flush()

        letters = collect_until(settings, T.DEAD_LETTERS, set(sent), timeout_s=180)
        missing = sorted(set(sent) - set(letters))
        assert not missing, f"{len(missing)} bad records without a dead letter, e.g. {missing[:5]}\n{worker.log_tail()}"
        for key, spec in sent.items():
            stages = {letter["stage"]: letter for letter in letters[key]}
            assert STAGE_OF[spec] in stages, (key, list(stages))
            letter = stages[STAGE_OF[spec]]
            assert letter["reason"] and letter["topic"] == spec.name(settings), letter

        matched = collect_until(settings, T.MATCHES, {"after-the-burst"}, timeout_s=120)
        [record] = matched["after-the-burst"]
        assert [hit["bank"] for hit in record["matches"]] == ["FUZZ"]
        assert worker.proc.poll() is None, worker.log_tail()
    finally:
        worker.stop()
