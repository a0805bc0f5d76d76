"""Property tests of every topic's decoder: whatever bytes arrive, JSON or Avro, the codec returns
a record that can be written on in both encodings, or raises DecodeError with a reason, never
anything else (the agents turn DecodeError into a dead letter; any other error would stop them)."""

from __future__ import annotations

import io
import json
from functools import lru_cache
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings, strategies as st

from pipeline.topics import ALL_TOPICS
from schemas.codec import AVRO_MAGIC, DecodeError, RecordCodec, codec

CODECS = sorted({spec.codec.full_name for spec in ALL_TOPICS})
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any JSON value, small: what a field holds when a producer gets it wrong.
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_PRIMITIVES = {
    "null": st.none(), "boolean": st.booleans(), "string": st.text(max_size=30), "bytes": st.text(max_size=10),
    "int": st.integers(-(2**31) - 2, 2**31 + 1), "long": st.integers(-(2**63) - 2, 2**63 + 1),
    "float": st.floats() | st.integers(), "double": st.floats() | st.integers(),
}
_VALID_PRIMITIVES = {**_PRIMITIVES, "int": st.integers(-(2**31), 2**31 - 1), "long": st.integers(-(2**63), 2**63 - 1),
                     "float": st.floats(width=32, allow_nan=False, allow_infinity=False),
                     "double": st.floats(allow_nan=False, allow_infinity=False),
                     "bytes": st.binary(max_size=10)}


def shaped_by(node: Any, named: dict[str, Any], noisy: bool, depth: int = 0) -> st.SearchStrategy:
    """Values shaped by the schema; when noisy, every part of them sometimes of the wrong type or
    missing (else valid: every field without a default present)."""
    def inner(child: Any) -> st.SearchStrategy:
        return shaped_by(child, named, noisy, depth + 1)

    if depth > 6:
        return ANY_JSON
    if isinstance(node, str) and node in named:
        return inner(named[node])
    if isinstance(node, list):
        return st.one_of([inner(branch) for branch in node])
    if isinstance(node, str):
        valid = _PRIMITIVES[node] if noisy else _VALID_PRIMITIVES[node]
    elif node["type"] == "record":
        fields = {f["name"]: inner(f["type"]) for f in node["fields"]}
        required = {} if noisy else {name: fields.pop(name) for name in list(fields)
                                     if not any(f["name"] == name and "default" in f for f in node["fields"])}
        valid = st.fixed_dictionaries(required, optional=fields)
    elif node["type"] == "enum":
        valid = st.sampled_from(node["symbols"])
    elif node["type"] == "array":
        valid = st.lists(inner(node["items"]), max_size=3)
    elif node["type"] == "map":
        valid = st.dictionaries(st.text(max_size=8), inner(node["values"]), max_size=3)
    else:
        return inner(node["type"])
    return st.one_of(valid, valid, valid, ANY_JSON) if noisy else valid  # mostly the right shape: decoding gets deep


@lru_cache(maxsize=None)
def shaped(name: str, noisy: bool = True) -> st.SearchStrategy:
    """Values of one record type (built once: hypothesis draws from it many times)."""
    from schemas.codec import _collect_named

    named: dict[str, Any] = {}
    _collect_named(codec(name).schema, named)
    return shaped_by(codec(name).schema, named, noisy)


def decoded_or_reason(record_codec: RecordCodec, raw: bytes) -> dict[str, Any] | None:
    """The record, or None after a DecodeError with a reason; any other exception fails the test."""
    try:
        record = record_codec.decode(raw)
    except DecodeError as exc:
        assert str(exc), "a DecodeError without a reason"
        return None
    assert isinstance(record, dict)
    for encoding in ("json", "avro"):  # what is accepted can be written on, and reads back the same
        assert record_codec.decode(record_codec.encode(record, encoding)) == record, encoding
    return record


@pytest.mark.parametrize("name", CODECS)
@FUZZ
@given(data=st.data())
def test_json_shaped_by_the_schema(name, data):
    record_codec = codec(name)
    value = data.draw(shaped(name))
    decoded_or_reason(record_codec, json.dumps(value).encode())  # json: big ints and NaN as a careless writer sends them


@pytest.mark.parametrize("name", CODECS)
@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_arbitrary_bytes(name, raw):
    decoded_or_reason(codec(name), raw)


@pytest.mark.parametrize("name", CODECS)
@FUZZ
@given(data=st.data())
def test_avro_bodies_corrupted(name, data):
    """Avro with this schema's fingerprint (or an earlier version's): arbitrary bodies, and valid
    bodies truncated or with a byte changed."""
    record_codec = codec(name)
    fingerprint = data.draw(st.sampled_from([record_codec.fingerprint, *record_codec.previous]))
    if data.draw(st.booleans()):
        body = data.draw(st.binary(max_size=200))
    else:
        record = record_codec.conform(data.draw(shaped(name, noisy=False)))
        buffer = io.BytesIO()
        schemaless_writer(buffer, record_codec.schema, record)
        body = bytearray(buffer.getvalue())
        cut = data.draw(st.integers(0, len(body)))
        if data.draw(st.booleans()) and body:
            body[min(cut, len(body) - 1)] = data.draw(st.integers(0, 255))
        else:
            body = body[:cut]
    decoded_or_reason(record_codec, AVRO_MAGIC + fingerprint + bytes(body))


def test_avro_lengths_beyond_the_body_are_refused_at_once():
    """A string or array length far beyond the bytes given: refused, without allocating it."""
    record_codec = codec("hma.Upload")
    huge_length = bytes([0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])  # zigzag varint near 2**62
    assert decoded_or_reason(record_codec, record_codec.header + huge_length) is None
