"""Encoding of every topic's values: JSON or Avro single-object encoding, one schema per record.

Input topics accept both forms: a UTF-8 JSON object, or Avro single-object encoding (0xC3 0x01,
the schema's 8-byte CRC-64-AVRO fingerprint little-endian, then the Avro binary body). Output is
JSON unless Avro is configured. JSON input is checked against the same Avro schema (missing
fields take their defaults), so both forms yield the same dict and a bad record gets a reason
that names the field.

Avro input written with an earlier version of a schema still decodes: each earlier version is kept,
in parsing canonical form, as schemas/previous/<name>.<fingerprint>.avsc, and a body written with it
is resolved to the current schema (fields added since take their defaults).
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form

from schemas.conform import Mismatch, compile_schema, plain_record_check

SCHEMA_DIR = Path(__file__).resolve().parent
PREVIOUS_DIR = SCHEMA_DIR / "previous"
AVRO_MAGIC = b"\xc3\x01"
ENCODINGS = ("json", "avro")


class DecodeError(ValueError):
    """A value that is not a valid record of the expected schema; the message says why."""


class RecordCodec:
    """Encodes and decodes one record type (one `schemas/hma.<Name>.avsc`)."""

    def __init__(self, full_name: str) -> None:
        self.full_name = full_name
        self.schema = load_schema(str(SCHEMA_DIR / f"{full_name}.avsc"))
        self.fingerprint = bytes.fromhex(fingerprint(to_parsing_canonical_form(self.schema), "CRC-64-AVRO"))
        self.header = AVRO_MAGIC + self.fingerprint
        self.previous = _previous_versions(full_name)  # fingerprint -> an earlier writer schema
        named: dict[str, Any] = {}
        _collect_named(self.schema, named)
        self._conform = compile_schema(self.schema, named)
        self._plain = plain_record_check(self.schema)  # None: every JSON value is conformed

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None or len(raw) == 0:
            raise DecodeError("empty value")
        if raw[:2] == AVRO_MAGIC:
            return self._decode_avro(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise DecodeError("value is neither a JSON object nor Avro single-object encoding") from None
        if not isinstance(obj, dict):
            raise DecodeError(f"JSON value is a {type(obj).__name__}, expected an object")
        if self._plain is not None and self._plain(obj):
            return obj  # already what conforming would build (a state topic's bulk read: millions)
        return self.conform(obj)

    def _decode_avro(self, raw: bytes) -> dict[str, Any]:
        writer = self.schema if raw[2:10] == self.fingerprint else self.previous.get(raw[2:10])
        if writer is None:
            raise DecodeError(
                f"Avro schema fingerprint {raw[2:10].hex()} is not that of {self.full_name} ({self.fingerprint.hex()})"
            )
        try:
            return schemaless_reader(io.BytesIO(raw[10:]), writer, self.schema)
        except Exception as exc:  # fastavro raises several types for corrupt bodies
            raise DecodeError(f"Avro body does not decode as {self.full_name}: {exc}") from None

    def conform(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Check a dict against the schema and fill defaults; raises DecodeError naming the field."""
        try:
            return self._conform(obj)
        except Mismatch as exc:
            raise DecodeError(str(exc)) from None

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, record: dict[str, Any], encoding: str = "json") -> bytes:
        if encoding == "json" and self._plain is not None and self._plain(record):
            try:
                return orjson.dumps(record)  # already conformed (a fetched exchange's bank signals: millions)
            except TypeError:
                pass  # a map key that is no string: the conformer makes it one
        record = self.conform(record)
        if encoding == "json":
            return orjson.dumps(record)
        if encoding == "avro":
            buf = io.BytesIO()
            buf.write(self.header)
            schemaless_writer(buf, self.schema, record)
            return buf.getvalue()
        raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")


@lru_cache(maxsize=None)
def codec(full_name: str) -> RecordCodec:
    return RecordCodec(full_name)


def _previous_versions(full_name: str) -> dict[bytes, Any]:
    versions = {}
    for path in PREVIOUS_DIR.glob(f"{full_name}.*.avsc"):
        canonical = path.read_text().strip()
        versions[bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))] = parse_schema(orjson.loads(canonical))
    return versions


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect_named(branch, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            named[schema["name"]] = schema
        for f in schema.get("fields", ()):
            _collect_named(f["type"], named)
        for key in ("items", "values"):
            if key in schema:
                _collect_named(schema[key], named)
