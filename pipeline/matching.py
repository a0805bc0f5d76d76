"""From hashed uploads to match records and actions: lookup, per-bank distance, guard."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Sequence

from pipeline import event_ids, metrics
from pipeline.banks import exchange_source
from pipeline.clock import now_ms
from pipeline.config import Settings
from pipeline.flood import LocalFloodGuard
from pipeline.guard import MATCH, NO_ACTION, QUARANTINED, Hit, decide
from pipeline.sampling import sampled_out
from pipeline.signal_types import SIGNAL_TYPES
from pipeline.state.bank_view import BankEntry, BankView


def bank_distance(bank: dict[str, Any], signal_type_name: str) -> int:
    kind = SIGNAL_TYPES[signal_type_name]
    return bank["distances"].get(signal_type_name, kind.default_distance)


def match_batch(
    hashed: Sequence[dict[str, Any]], view: BankView, settings: Settings, flood_guard: LocalFloodGuard | None = None,
    sample: bool = True,
) -> list[dict[str, Any]]:
    """One match record per hashed upload: lookup, then the guard (replica mode: all in one place).
    `sample=False` keeps every fractional enabled_ratio (upstream's bypass_coinflip)."""
    records, hits = lookup_batch(hashed, view, settings, sample)
    return judge_batch(records, hits, view, flood_guard, sample)


@dataclass
class LookupPlan:
    """The match records of a batch (no hits yet) and its queries per signal type."""

    records: list[dict[str, Any]]
    queries: dict[str, list[tuple[int, str]]]  # signal type -> (record index, value)
    widest: dict[str, int]  # signal type -> the widest distance of any bank


def plan_lookups(hashed: Sequence[dict[str, Any]], view: BankView, settings: Settings, sample: bool = True) -> LookupPlan:
    records = [empty_match_record(h) for h in hashed]
    queries: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, h in enumerate(hashed):
        for kind_name, signal in h["signals"].items():
            reason = _skip_reason(kind_name, signal, settings, view, h["content_id"] if sample else None)
            if reason:
                records[i]["skipped"][kind_name] = reason
            else:
                queries[kind_name].append((i, signal["value"]))
    widest = {kind: max((bank_distance(b, kind) for b in view.banks.values()), default=0) for kind in queries}
    return LookupPlan(records, dict(queries), widest)


def search_plan(view: BankView, plan: LookupPlan) -> dict[str, list[list[tuple[int, int]]]]:
    """The index searches of a plan: (row, distance) per query. Safe on another thread than the
    one applying bank changes (the PDQ kernels release the GIL, so the event loop keeps going);
    run it and collect_hits inside one `view.pinned()`."""
    found: dict[str, list[list[tuple[int, int]]]] = {}
    for kind, items in plan.queries.items():
        started = time.perf_counter()
        found[kind] = view.search_rows(kind, [v for _, v in items], plan.widest[kind])
        metrics.SEARCH_SECONDS.labels(kind).observe(time.perf_counter() - started)
        metrics.LOOKUPS.labels(kind).inc(len(items))
    return found


def collect_hits(view: BankView, plan: LookupPlan, found: dict[str, list[list[tuple[int, int]]]]) -> list[list[Hit]]:
    """Each upload's bank entries within their own bank's distance."""
    hits: list[list[Hit]] = [[] for _ in plan.records]
    for kind, items in plan.queries.items():
        for (i, value), candidates in zip(items, view.candidates(found[kind])):
            for cand in candidates:
                hit = _hit_within_threshold(view, cand.entry, cand.distance, value)
                if hit is not None:
                    hits[i].append(hit)
    return [_one_per_bank_signal(h) for h in hits]


def lookup_batch(
    hashed: Sequence[dict[str, Any]], view: BankView, settings: Settings, sample: bool = True
) -> tuple[list[dict[str, Any]], list[list[Hit]]]:
    """Match records without hits yet, and each upload's bank entries within their bank's distance.

    Queries of one signal type are searched together. A shard worker's view holds one shard, so
    its hits are that shard's part of the answer.
    """
    plan = plan_lookups(hashed, view, settings, sample)
    with view.pinned():
        return plan.records, collect_hits(view, plan, search_plan(view, plan))


async def lookup_batch_on(
    executor: Executor, hashed: Sequence[dict[str, Any]], view: BankView, settings: Settings, sample: bool = True
) -> tuple[list[dict[str, Any]], list[list[Hit]]]:
    """lookup_batch, with the index searches on `executor` (one thread): the event loop keeps
    serving while the compiled kernels (which release the GIL) search on the other core."""
    plan = plan_lookups(hashed, view, settings, sample)
    if not plan.queries:
        return plan.records, [[] for _ in plan.records]
    with view.pinned():
        found = await asyncio.get_running_loop().run_in_executor(executor, search_plan, view, plan)
        return plan.records, collect_hits(view, plan, found)


def judge_batch(
    records: list[dict[str, Any]], hits: list[list[Hit]], view: BankView, flood_guard: LocalFloodGuard | None = None,
    sample: bool = True,
) -> list[dict[str, Any]]:
    """The guard's status for every hit, written into the records.

    With a flood guard (the matcher's), hits that would pass are counted and stopped past their
    bank's flood limit.
    """
    for record, upload_hits in zip(records, hits):
        decide(upload_hits, view, record["content_id"] if sample else None)
        if flood_guard is not None:
            _check_floods(upload_hits, view, flood_guard, record)
        record["matches"] = sorted(
            (_hit_record(hit) for hit in upload_hits),
            key=lambda hit: (hit["distance"], hit["bank"], hit["bank_content_id"], hit["signal_type"]),
        )
    return records


def _hit_within_threshold(view: BankView, entry: BankEntry, distance: int, query: str) -> Hit | None:
    """A hit when the entry's bank exists and the distance is within it; a renamed bank's entries
    are reported under its new name."""
    named = view.bank_of(entry)
    if named is None:
        return None
    name, bank = named
    if name != entry.bank:
        entry = dataclasses.replace(entry, bank=name)
    threshold = bank_distance(bank, entry.signal_type)
    return Hit(entry, bank, distance, threshold, query) if distance <= threshold else None


def _one_per_bank_signal(hits: list[Hit]) -> list[Hit]:
    """While a bank is renamed, its signal exists under both names: one hit for it, not two
    (hits are few per upload: a set costs little)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for hit in hits:
        key = (hit.entry.bank, hit.entry.signal_type, hit.entry.signal_id)
        if key not in seen:
            seen.add(key)
            out.append(hit)
    return out


def candidate_record(hit: Hit) -> dict[str, Any]:
    """A shard's hit before the guard, as hma.shard-hits carries it (hma.ShardCandidate)."""
    e = hit.entry
    return {
        "key": e.key, "bank": e.bank, "bank_content_id": e.bank_content_id, "signal_type": e.signal_type,
        "signal_id": e.signal_id, "value": e.value, "disable_until_ts": e.disable_until_ts,
        "query_signal": hit.query_signal, "distance": hit.distance,
    }


def hits_from_candidates(candidates: Sequence[dict[str, Any]], view: BankView) -> list[Hit]:
    """Shards' candidates back to hits, judged by this view's banks (the merger's)."""
    hits = []
    for c in candidates:
        entry = BankEntry(
            key=c["key"], bank=c["bank"], bank_content_id=c["bank_content_id"], signal_type=c["signal_type"],
            signal_id=c["signal_id"], value=c["value"], disable_until_ts=c["disable_until_ts"], metadata={},
        )
        hit = _hit_within_threshold(view, entry, c["distance"], c["query_signal"])
        if hit is not None:
            hits.append(hit)
    return _one_per_bank_signal(hits)


def _check_floods(hits: list[Hit], view: BankView, flood_guard: LocalFloodGuard, record: dict[str, Any]) -> None:
    for hit in hits:
        if hit.status != MATCH or not hit.bank["flood"]:
            continue
        verdict = flood_guard.over_limit(
            hit.entry.signal_id, record["content_id"], record["matched_at"], hit.bank["flood"],
            released_at(view, hit.entry.signal_id), event_ids.flood_hit(record.get("event_id"), hit.entry.signal_id),
        )
        if verdict is not None:
            hit.status = QUARANTINED
            hit.reason = (f"signal {hit.entry.signal_id} over the flood limit of bank {hit.entry.bank}: "
                          f"{verdict.count} matches within {verdict.window_ms // 1000}s (quarantine pending)")


def released_at(view: BankView, sid: str) -> int | None:
    """When a reviewer last released the signal from quarantine, if they did."""
    q = view.quarantine.get(sid)
    return q["changed_at"] if q is not None and q["state"] == "released" else None


def _hit_record(hit: Hit) -> dict[str, Any]:
    return {
        "signal_type": hit.entry.signal_type,
        "query_signal": hit.query_signal,
        "bank": hit.entry.bank,
        "bank_content_id": hit.entry.bank_content_id,
        "signal_id": hit.entry.signal_id,
        "distance": hit.distance,
        "threshold": hit.threshold,
        "status": hit.status,
        "reason": hit.reason,
        "exchange": exchange_source(hit.entry.metadata),
    }


def _skip_reason(
    kind_name: str, signal: dict[str, Any], settings: Settings, view: BankView, content_id: str | None
) -> str:
    kind = SIGNAL_TYPES.get(kind_name)
    if kind is None:
        return f"{kind_name} is not matched"
    ratio = view.signal_type_ratio(kind_name)
    if ratio <= 0:
        return f"signal type {kind_name} is disabled (enabled_ratio 0)"
    if (coin := sampled_out(ratio, content_id)) is not None:
        return f"signal type {kind_name} is sampled out for this content (its coin {coin:.3f} >= enabled_ratio {ratio:g})"
    quality, floor = signal.get("quality"), kind.min_quality(settings)
    if floor is not None and quality is not None and quality < floor:
        return f"{kind_name} quality {quality} is below {floor}"
    return ""


def empty_match_record(hashed: dict[str, Any]) -> dict[str, Any]:
    return {
        "content_id": hashed["content_id"],
        "content_type": hashed["content_type"],
        "signals": hashed["signals"],
        "matches": [],
        "skipped": {},
        "metadata": hashed["metadata"],
        "submitted_at": hashed["submitted_at"],
        "matched_at": now_ms(),
        "retroactive": False,
        "uploaded_at": None,
    }


def actions_for(record: dict[str, Any], view: BankView) -> list[dict[str, Any]]:
    """One action record per action name among the hits the guard let through."""
    by_action: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for hit in record["matches"]:
        bank = view.banks.get(hit["bank"])
        if hit["status"] == MATCH and bank is not None and bank["action"] != NO_ACTION:
            by_action[bank["action"]].append(hit)
    return [
        {
            "content_id": record["content_id"],
            "action": action,
            "matches": hits,
            "metadata": record["metadata"],
            "submitted_at": record["submitted_at"],
            "acted_at": now_ms(),
            "retroactive": record["retroactive"],
            "event_id": event_ids.action(record.get("event_id"), action),
        }
        for action, hits in sorted(by_action.items())
    ]
