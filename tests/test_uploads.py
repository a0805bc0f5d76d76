"""Upload checks beyond the schema: one content source, valid signals, valid base64."""

import json

import pytest

from pipeline.uploads import InvalidUpload, new_upload, parse_upload

PDQ = "f" * 64


def raw(**fields):
    return json.dumps({"content_id": "c1", "content_type": "photo", **fields}).encode()


def test_signals_are_normalised_to_lower_case():
    assert parse_upload(raw(signals={"pdq": PDQ.upper()}))["signals"] == {"pdq": PDQ}


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({}, "exactly one of url, content_b64, signals is required; got none"),
        ({"url": "https://x/y.jpg", "signals": {"pdq": PDQ}}, "got url, signals"),
        ({"signals": {"pdq": "abc"}}, "pdq value must be 64 hex characters"),
        ({"signals": {"pdq": "g" * 64}}, "pdq value must be 64 hex characters"),
        ({"signals": {"sha1": "00"}}, "unknown signal type 'sha1'"),
        ({"signals": {"video_md5": "0" * 32}}, "not a signal type of photo content"),
        ({"signals": {}}, "signals: empty"),
        ({"content_b64": "not base64!"}, "content_b64: invalid base64"),
        ({"content_id": " ", "url": "https://x"}, "content_id: empty"),
    ],
)
def test_invalid_uploads(fields, reason):
    with pytest.raises(InvalidUpload) as info:
        parse_upload(raw(**fields))
    assert reason in str(info.value)


def test_new_upload_round_trips_inline_content():
    upload = new_upload("c2", "photo", content=b"\x89PNG...")
    assert parse_upload(json.dumps(upload).encode())["content_b64"] == upload["content_b64"]
