"""Deterministic ids of output records (their `event_id` field), for consumers that drop duplicates.

Outputs are at least once by default: a worker that crashes before it commits its input offsets
processes that input again and writes its outputs again. Every output record carries an id made
only of what identifies its input, so the second copy has the same id as the first:

- hma.hashes: the upload's position in hma.uploads (topic, partition, offset), content id and
  submission time (so a topic deleted and made again, whose offsets start over, gives new ids);
- hma.matches: the hashed upload's own event id (or, for a record without one, its position in
  hma.hashes), so a hash record written twice still leads to one match id;
- hma.retro-matches: the old upload's hashed record and the new signals it matched;
- hma.actions: the match (live or retroactive) and the action name;
- hma.flood-hits: the match and the signal;
- hma.dead-letters: the failed input's position and key, and the stage that gave up on it.

Two separate uploads of the same content are two events with two ids.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

Position = tuple[str, int, int]  # (topic, partition, offset) of a consumed record


def derive(kind: str, *parts: object) -> str:
    """An id of 32 hex digits from a record kind and the parts that identify its input."""
    text = "\x1f".join((kind, *(str(part) for part in parts)))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def hashed_upload(upload_position: Position, hashed: dict[str, Any]) -> str:
    """hma.hashes: the upload, by its place in hma.uploads, content id and submission time."""
    return derive("hashes", *upload_position, hashed["content_id"], hashed["submitted_at"])


def hashed_source(hashed: dict[str, Any], hashes_position: Position) -> str:
    """What identifies a hashed upload: its event id, or its place in hma.hashes when it has none
    (written by a producer of its own or before records carried ids)."""
    return hashed.get("event_id") or derive("hashes", *hashes_position, hashed.get("content_id"), hashed.get("hashed_at"))


def match(hashed: dict[str, Any], hashes_position: Position) -> str:
    """hma.matches: one per hashed upload."""
    return derive("match", hashed_source(hashed, hashes_position))


def retro_match(hashed: dict[str, Any], hashes_position: Position, hits: Iterable[dict[str, Any]]) -> str:
    """hma.retro-matches: an old upload and the newly banked signals it matched."""
    signals = sorted(f"{hit['bank']}/{hit['bank_content_id']}/{hit['signal_id']}" for hit in hits)
    return derive("retro-match", hashed_source(hashed, hashes_position), *signals)


def action(match_id: str | None, action_name: str) -> str | None:
    """hma.actions: one per action name of a match."""
    return None if match_id is None else derive("action", match_id, action_name)


def flood_hit(match_id: str | None, signal_id: str) -> str | None:
    """hma.flood-hits: one per effective hit of a match."""
    return None if match_id is None else derive("flood-hit", match_id, signal_id)


def dead_letter(position: Position, key: bytes | None, stage: str) -> str:
    return derive("dead-letter", *position, key.hex() if key is not None else "", stage)
