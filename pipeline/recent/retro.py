"""Retroactive matches: old uploads that newly banked signals match, judged as live uploads are."""

from __future__ import annotations

from typing import Any


from pipeline import event_ids
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.index.codes import codes_from_hex
from pipeline.matching import bank_distance, match_batch
from pipeline import topics as T
from pipeline.recent.ring import RecentRing
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.state.log_reader import read_at
from pipeline.state.bank_view import BankEntry, BankView


def retro_matches(ring: RecentRing, new: list[BankEntry], view: BankView, settings: Settings) -> list[dict[str, Any]]:
    """One hma.retro-matches record per recent upload that a new signal matches.

    Each such upload is matched again against the whole current view (so negative banks,
    quarantine and disabled content apply as for a live upload), and its record keeps the hits
    on the new signals only. Candidates are the recent uploads within the new signals' widest
    bank distance in the ring (by their PDQ codes: a photo's hash, a video's frames); the match
    itself is decided as for a live upload.
    """
    kept: list[BankEntry] = []
    positions: set[tuple[int, int]] = set()
    for kind in sorted({e.signal_type for e in new}):
        plugin = SIGNAL_TYPES.get(kind)
        entries = [e for e in new if e.signal_type == kind and e.bank in view.banks]
        codes = [code for e in entries for code in plugin.recent_codes(e.value)] if plugin is not None else []
        if not codes:
            continue
        kept += entries
        widest = max(bank_distance(view.banks[e.bank], kind) for e in entries)
        positions |= {(h.partition, h.offset) for h in ring.search(codes_from_hex(codes), widest)}
    if not positions:
        return []
    topic = T.HASHES.name(settings)
    uploads: dict[str, tuple[event_ids.Position, dict[str, Any]]] = {}
    for (partition, offset), record in sorted(read_at(settings, T.HASHES, sorted(positions)).items()):
        uploads.setdefault(record["content_id"], ((topic, partition, offset), record))
    fresh = {(e.bank, e.bank_content_id, e.signal_id) for e in kept}
    records = []
    hashed = [upload for _, upload in uploads.values()]
    for record, (position, upload) in zip(match_batch(hashed, view, settings), uploads.values()):
        record["matches"] = [h for h in record["matches"] if (h["bank"], h["bank_content_id"], h["signal_id"]) in fresh]
        if record["matches"]:
            record.update(retroactive=True, uploaded_at=upload["hashed_at"], matched_at=now_ms(),
                          event_id=event_ids.retro_match(upload, position, record["matches"]))
            records.append(record)
    return records


