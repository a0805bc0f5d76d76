"""Codecs: JSON and Avro single-object encoding give the same records; bad values get reasons."""

import json

import pytest

from pipeline.topics import ALL_TOPICS, UPLOADS
from schemas.codec import AVRO_MAGIC, DecodeError, codec

UPLOAD = {"content_id": "post-1", "content_type": "photo", "signals": {"pdq": "ab" * 32}, "metadata": {"k": "v"}}


def test_every_topic_has_a_loadable_schema():
    for spec in ALL_TOPICS:
        assert spec.codec.fingerprint and len(spec.codec.fingerprint) == 8


def test_json_and_avro_decode_to_the_same_record():
    c = UPLOADS.codec
    from_json = c.decode(json.dumps(UPLOAD).encode())
    avro = c.encode(from_json, "avro")
    assert avro[:2] == AVRO_MAGIC and avro[2:10] == c.fingerprint
    assert c.decode(avro) == from_json
    assert from_json["url"] is None and from_json["submitted_at"] is None


def test_fingerprint_is_crc64_avro_of_canonical_form():
    # Avro spec: fingerprint of the schema "int" is 0x7275d51a3f395c8f, written little-endian.
    from fastavro.schema import fingerprint

    assert fingerprint('"int"', "CRC-64-AVRO") == "8f5c393f1ad57572"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"\xff\xfe\x00garbage", "neither a JSON object nor Avro"),
        (b"[1, 2]", "expected an object"),
        (b"", "empty value"),
        (json.dumps({"content_type": "photo"}).encode(), "content_id: missing"),
        (json.dumps({"content_id": "x", "content_type": "gif"}).encode(), "content_type: \"gif\" is not one of photo, video"),
        (json.dumps({"content_id": 7, "content_type": "photo"}).encode(), "content_id: 7 is not string"),
        (json.dumps({"content_id": "x", "content_type": "photo", "metadata": {"a": 1}}).encode(), "metadata.a"),
        (AVRO_MAGIC + b"\x00" * 8 + b"\x02a", "fingerprint"),
        (AVRO_MAGIC + codec("hma.Upload").fingerprint + b"\x99", "does not decode"),
    ],
)
def test_bad_values_name_the_problem(raw, reason):
    with pytest.raises(DecodeError, match=None) as info:
        UPLOADS.codec.decode(raw)
    assert reason in str(info.value)


def test_booleans_are_not_numbers():
    with pytest.raises(DecodeError):
        codec("hma.Hit").conform({"signal_type": "pdq", "query_signal": "", "bank": "B", "bank_content_id": True,
                                   "signal_id": "s", "distance": 1, "threshold": 2, "status": "match"})


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_numbers_that_json_cannot_write_are_refused(number):
    with pytest.raises(DecodeError, match="finite"):
        codec("hma.Setting").conform({"name": "n", "number": number, "changed_at": 0})


def test_avro_written_with_an_earlier_schema_decodes_with_new_fields_defaulted():
    """hma.HashedUpload before it carried event_id: a body written then still decodes."""
    import io

    from fastavro import schemaless_writer

    c = codec("hma.HashedUpload")
    assert c.previous, "the earlier versions of hma.HashedUpload are kept in schemas/previous"
    old_fingerprint, old_schema = next(iter(c.previous.items()))
    record = {"content_id": "c1", "content_type": "photo", "signals": {"pdq": {"value": "ab", "quality": 90}},
              "source": "signals", "metadata": {}, "submitted_at": None, "hashed_at": 5}
    body = io.BytesIO()
    schemaless_writer(body, old_schema, record)
    decoded = c.decode(AVRO_MAGIC + old_fingerprint + body.getvalue())
    assert decoded == {**record, "event_id": None}


def test_a_plain_record_decodes_as_the_conformer_builds_it():
    """hma.bank-signals takes the plain-record path; its answers are the conformer's, and every
    value the conformer changes or refuses goes through it."""
    from pipeline.topics import BANK_SIGNALS

    c = BANK_SIGNALS.codec
    record = {"bank": "B", "bank_content_id": 3, "signal_type": "pdq", "signal_id": "ab" * 8, "value": "0" * 64,
              "metadata": {"k": "v"}, "disable_until_ts": 1, "added_at": 5}
    assert c.decode(json.dumps(record).encode()) == c.conform(record) == record
    assert c.decode(json.dumps({**record, "extra": 1}).encode()) == record  # extra keys dropped
    assert c.decode(json.dumps({k: v for k, v in record.items() if k != "metadata"}).encode()) == {**record, "metadata": {}}
    for bad in ({"bank_content_id": 2**63}, {"bank_content_id": True}, {"metadata": {"k": 1}}, {"bank": None},
                {"added_at": 1.5}):
        with pytest.raises(DecodeError):
            c.decode(json.dumps({**record, **bad}).encode())


def test_a_plain_record_encodes_as_the_conformer_builds_it():
    """Encoding skips the conformer's copy for a plain record; what it writes, and what it refuses,
    are the conformer's."""
    from pipeline.topics import BANK_SIGNALS

    c = BANK_SIGNALS.codec
    record = {"bank": "B", "bank_content_id": 3, "signal_type": "pdq", "signal_id": "ab" * 8, "value": "0" * 64,
              "metadata": {"k": "v"}, "disable_until_ts": 1, "added_at": 5}
    assert json.loads(c.encode(record)) == record
    assert json.loads(c.encode({**record, "metadata": {7: "v"}}))["metadata"] == {"7": "v"}  # keys made strings
    assert json.loads(c.encode({**record, "extra": 1})) == record
    for bad in ({"bank_content_id": 2**63}, {"bank_content_id": True}, {"metadata": {"k": 1}}, {"bank": None}):
        with pytest.raises(DecodeError):
            c.encode({**record, **bad})


def test_the_plain_check_wants_exactly_the_schema_fields_with_their_exact_types():
    """The generated check of hma.bank-signals: a field swapped for another (same count), a bool
    for an int, a long past its range, a map of other than strings are not plain."""
    from pipeline.topics import BANK_SIGNALS

    plain = BANK_SIGNALS.codec._plain
    record = {"bank": "B", "bank_content_id": 3, "signal_type": "pdq", "signal_id": "ab" * 8, "value": "0" * 64,
              "metadata": {"k": "v"}, "disable_until_ts": 1, "added_at": 5}
    assert plain(record) and plain({**record, "metadata": {}})
    swapped = {("other" if k == "value" else k): v for k, v in record.items()}
    for bad in (swapped, {**record, "extra": 1}, {**record, "added_at": True}, {**record, "added_at": 2**63},
                {**record, "added_at": -(2**63) - 1}, {**record, "metadata": {"k": None}}, {**record, "bank": b"B"},
                [record], None):
        assert not plain(bad), bad
