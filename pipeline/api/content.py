"""Turning what a request names (a URL, an uploaded file, a signal) into signals, off the event loop."""

from __future__ import annotations

import asyncio
from typing import Any

from connectors.fetch import FetchError, fetch_url
from pipeline.api.http import ApiError
from pipeline.config import Settings
from pipeline.hashing import URL_CONTENT, HashingError, detect_content_type, hash_content
from pipeline.signal_types import InvalidSignal, content_types, signal_type


def checked_signal(kind: str, value: str) -> str:
    try:
        st = signal_type(kind)
    except InvalidSignal:
        raise ApiError(400, f"No such SignalType '{kind}'") from None
    try:
        return st.validate(value)
    except InvalidSignal as exc:
        raise ApiError(400, f"invalid signal: {exc}") from None


def _content_type(hint: str | None, data: bytes, filename: str | None) -> str:
    if hint is None or hint == "":
        return detect_content_type(data, filename)
    if hint not in content_types():
        raise ApiError(400, f"no such content_type: '{hint}'")
    return hint


async def signals_of_bytes(data: bytes, filename: str | None, hint: str | None) -> dict[str, Any]:
    """{signal type: SignalValue} of uploaded content; 400 when it cannot be hashed."""
    kind = _content_type(hint, data, filename)
    try:
        return await asyncio.to_thread(hash_content, kind, data)
    except HashingError as exc:
        raise ApiError(400, f"cannot hash the content: {exc}") from None


async def signals_of_url(url: str, hint: str | None, settings: Settings) -> dict[str, Any]:
    """{signal type: SignalValue} of the content at a URL, or of the URL itself (content_type=url)."""
    if hint == URL_CONTENT:
        return await signals_of_bytes(url.encode(), None, hint)
    try:
        data = await asyncio.to_thread(fetch_url, url, settings)
    except FetchError as exc:
        status = 413 if "size cap" in str(exc) else 400
        raise ApiError(status, f"Failed to fetch URL: {exc}") from None
    return await signals_of_bytes(data, url.rsplit("/", 1)[-1], hint)
