"""What makes an upload event acceptable, beyond its Avro schema."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pipeline.clock import now_ms
from pipeline.signal_types import InvalidSignal, signal_type
from pipeline.topics import UPLOADS
from schemas.codec import DecodeError

CONTENT_SOURCES = ("url", "content_b64", "signals")


class InvalidUpload(ValueError):
    """An upload that decodes but cannot be processed; the message says why."""


def parse_upload(raw: bytes) -> dict[str, Any]:
    """Decode and check one hma.uploads value; raises InvalidUpload with a readable reason."""
    try:
        upload = UPLOADS.codec.decode(raw)
    except DecodeError as exc:
        raise InvalidUpload(str(exc)) from None
    check_upload(upload)
    return upload


def new_upload(
    content_id: str,
    content_type: str,
    *,
    url: str | None = None,
    content: bytes | None = None,
    signals: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An hma.uploads value, checked as the hasher will check it."""
    upload = UPLOADS.codec.conform({
        "content_id": content_id,
        "content_type": content_type,
        "url": url,
        "content_b64": None if content is None else base64.b64encode(content).decode("ascii"),
        "signals": signals,
        "metadata": dict(metadata or {}),
        "submitted_at": now_ms(),
    })
    check_upload(upload)
    return upload


def check_upload(upload: dict[str, Any]) -> None:
    if not upload["content_id"].strip():
        raise InvalidUpload("content_id: empty")
    given = [name for name in CONTENT_SOURCES if upload.get(name) is not None]
    if len(given) != 1:
        listed = ", ".join(given) if given else "none"
        raise InvalidUpload(f"exactly one of url, content_b64, signals is required; got {listed}")
    if upload["content_b64"] is not None:
        decode_content_b64(upload["content_b64"])
    if upload["signals"] is not None:
        upload["signals"] = check_signals(upload["content_type"], upload["signals"])


def decode_content_b64(text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidUpload(f"content_b64: invalid base64 ({exc})") from None
    if not data:
        raise InvalidUpload("content_b64: empty content")
    return data


def check_signals(content_type: str, signals: dict[str, str]) -> dict[str, str]:
    if not signals:
        raise InvalidUpload("signals: empty")
    checked = {}
    for name, value in signals.items():
        try:
            kind = signal_type(name)
            if content_type not in kind.content_types:
                raise InvalidSignal(f"{name} is not a signal type of {content_type} content")
            checked[name] = kind.validate(value)
        except InvalidSignal as exc:
            raise InvalidUpload(f"signals.{name}: {exc}") from None
    return checked
