"""`hmas replay`: re-read hma.hashes from a time with its own consumer group and write retroactive
matches against the current banks, for content older than the ring.

Resumable: the group's committed offsets say where an interrupted replay stopped (it commits after
each batch it has written). Never re-emits an action: hits already acted on (hma.actions) or already
written as retroactive matches (hma.retro-matches) for the same content, bank and signal are left out.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from confluent_kafka import KafkaError, TopicPartition

from pipeline import event_ids, kafka_clients
from pipeline import topics as T
from pipeline.client import Client
from pipeline.clock import parse_duration_ms
from pipeline.config import Settings
from pipeline.guard import MATCH
from pipeline.matching import match_batch
from pipeline.progress import ProgressBar
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import read_to_end, topic_partitions
from schemas.codec import DecodeError


def parse_time(text: str, now: float | None = None) -> int:
    """Unix ms from ISO 8601 ("2026-11-24T10:00:00Z"), unix seconds, or relative ("-2h", "-30m")."""
    now = time.time() if now is None else now
    readable = "use ISO 8601, unix seconds or -2h / -30m / -7d"
    if text.startswith("-"):
        try:
            return round(now * 1000) - parse_duration_ms(text[1:])
        except ValueError:
            raise ValueError(f"cannot read time {text!r}: {readable}") from None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return int(float(text) * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot read time {text!r}: {readable}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


@dataclass
class ReplayStats:
    records: int = 0
    matched: int = 0
    written: int = 0
    skipped_already_acted: int = 0


def current_view(settings: Settings) -> BankView:
    view = BankView()
    for spec in T.VIEW_TOPICS:
        view.apply(spec, read_to_end(settings, spec))
    return view


def acted_keys(settings: Settings) -> set[tuple[str, str, str]]:
    """(content, bank, signal) of every effective hit already acted on or already replayed."""
    keys: set[tuple[str, str, str]] = set()
    for spec in (T.ACTIONS, T.RETRO_MATCHES):
        for _, record in Client(settings).read(spec, idle_timeout_s=2):
            for hit in record["matches"]:
                if hit["status"] == MATCH:
                    keys.add((record["content_id"], hit["bank"], hit["signal_id"]))
    return keys


def group_id(settings: Settings, start_ms: int, end_ms: int | None, banks: list[str]) -> str:
    """The same replay (same range and banks) resumes under the same consumer group."""
    digest = hashlib.sha256(f"{start_ms}:{end_ms}:{','.join(sorted(banks))}".encode()).hexdigest()[:12]
    return f"{settings.topic_prefix}replay-{digest}"


def replay(settings: Settings, start_ms: int, end_ms: int | None = None, banks: list[str] | None = None,
           stop_after: int | None = None, out: TextIO | None = None) -> ReplayStats:
    """Retroactive matches of hma.hashes from start_ms; progress on `out` (stderr) when a terminal, else logged."""
    banks = banks or []
    view = current_view(settings)
    unknown = [b for b in banks if b not in view.banks]
    if unknown:
        raise ValueError(f"no such bank: {', '.join(unknown)}")
    done = acted_keys(settings)
    topic = T.HASHES.name(settings)
    consumer = kafka_clients.consumer(settings, {
        "group.id": group_id(settings, start_ms, end_ms, banks),
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
    })
    client = Client(settings)
    stats = ReplayStats()
    try:
        parts = sorted(topic_partitions(settings, topic))
        committed = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=30)
        by_time = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], timeout=30)
        assign, remaining = [], {}
        for c, t in zip(committed, by_time):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, c.partition), timeout=30)
            start = c.offset if c.offset >= 0 else (t.offset if t.offset >= 0 else high)
            assign.append(TopicPartition(topic, c.partition, start))
            if high > start:
                remaining[c.partition] = (start, high)
        total = sum(high - start for start, high in remaining.values())
        consumer.assign(assign)
        progress = ProgressBar("replay", total, out=out)
        while remaining and (stop_after is None or stats.records < stop_after):
            wanted = 5000 if stop_after is None else min(5000, stop_after - stats.records)
            messages = consumer.consume(wanted, timeout=1.0)
            batch, positions, last = [], [], {}
            for msg in messages:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(msg.error()))
                    continue
                last[msg.partition()] = msg.offset()
                stats.records += 1
                try:
                    record = T.HASHES.codec.decode(msg.value())
                except DecodeError:
                    continue
                if end_ms is None or record["hashed_at"] <= end_ms:
                    batch.append(record)
                    positions.append((topic, msg.partition(), msg.offset()))
            for record in _retro_records(batch, positions, view, settings, banks, done, stats):
                client.produce(T.RETRO_MATCHES, record["content_id"], record)
            client.flush()
            if last:
                consumer.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()], asynchronous=False)
            for p, o in last.items():
                if p in remaining and o + 1 >= remaining[p][1]:
                    del remaining[p]
            progress.update(stats.records, _replay_note(stats))
        progress.update(stats.records, _replay_note(stats), final=True)
    finally:
        consumer.close()
    return stats


def _replay_note(stats: ReplayStats) -> str:
    return f"{stats.written:,} retroactive matches, {stats.skipped_already_acted:,} hits already acted on"


def _retro_records(batch: list[dict[str, Any]], positions: list[event_ids.Position], view: BankView,
                   settings: Settings, banks: list[str], done: set[tuple[str, str, str]],
                   stats: ReplayStats) -> list[dict[str, Any]]:
    out = []
    for upload, position, record in zip(batch, positions, match_batch(batch, view, settings)):
        keep = []
        for hit in record["matches"]:
            if banks and hit["bank"] not in banks:
                continue
            key = (record["content_id"], hit["bank"], hit["signal_id"])
            if key in done:
                stats.skipped_already_acted += 1
                continue
            if hit["status"] == MATCH:
                done.add(key)
            keep.append(hit)
        if keep:
            stats.matched += 1
            record.update(matches=keep, retroactive=True, uploaded_at=upload["hashed_at"],
                          event_id=event_ids.retro_match(upload, position, keep))
            out.append(record)
            stats.written += 1
    return out
