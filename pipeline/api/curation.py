"""Upstream HMA's curation routes (/c/banks, /c/bank/...) over hma.banks and hma.bank-signals.

Bank JSON is upstream's exactly (`name`, `matching_enabled_ratio`). This project's bank controls
(distances, negative banks, flood limit, confirmed bank, action) have routes of their own,
/c/bank/<bank>/controls, and are accepted as extra fields when a bank is created or updated.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from pipeline import topics as T
from pipeline.api.content import checked_signal, signals_of_bytes, signals_of_url
from pipeline.api.http import ApiError, Route, flag, json_object, reply, uploaded_file
from pipeline.api.limits import HASH
from pipeline.api.renaming import finish_rename, rename_bank
from pipeline.api.state import ApiState
from pipeline.banks import (
    CONTROL_FIELDS, METADATA_KEYS, ORIGINAL_MEDIA_URI, content_metadata_fields, InvalidBank, bank_controls, bank_record, bank_signal_record, check_bank_name, check_enabled_ratio,
    checked_bank, enabled_fields, matching_enabled_ratio,
)
from pipeline.clock import now_ms
from pipeline.state.bank_view import BankEntry

FIVE_YEARS_S = 5 * 365 * 24 * 3600


def bank_json(bank: dict[str, Any]) -> dict[str, Any]:
    """Upstream's BankConfig: the name and the matching ratio, nothing else."""
    return {"name": bank["name"], "matching_enabled_ratio": matching_enabled_ratio(bank)}


class Curation:
    """The bank changes behind the /c routes and the UI's bank pages: one place for their rules."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.view = state.view

    def existing_bank(self, name: str) -> dict[str, Any]:
        bank = self.view.banks.get(name)
        if bank is None:
            raise ApiError(404, f"bank '{name}' not found")
        return bank

    def unused_name(self, name: Any, taken: str) -> None:
        """A name a new bank may take: 400 when HMA's naming rule refuses it, 403 when taken."""
        try:
            check_bank_name(name)
        except InvalidBank as exc:
            raise ApiError(400, str(exc)) from None
        if name in self.view.banks:
            raise ApiError(403, taken)
        if self.view.holds_signals(name):
            raise ApiError(403, f"signals of a renamed bank are still banked under '{name}': finish its rename first "
                                f"(`hmas bank rename {name} <its new name>`)")

    def content_entries(self, bank: str, content_id: str) -> list[BankEntry]:
        try:
            cid = int(content_id)
        except ValueError:
            raise ApiError(404, f"content '{content_id}' not found") from None
        entries = [e for e in self.view.entries(bank) if e.bank_content_id == cid]
        if not entries:
            raise ApiError(404, f"content '{content_id}' not found")
        return entries

    def configured(self, bank: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """The bank record with the request's fields applied, checked (pipeline.banks.checked_bank)."""
        bank = dict(bank)
        bank["renamed_from"] = None  # only the record of a rename carries it (pipeline/bank_rename.py)
        try:
            if "enabled_ratio" in body:
                bank.update(enabled_fields(check_enabled_ratio(body["enabled_ratio"])))
            elif "enabled" in body:
                bank.update(enabled_fields(1.0 if body["enabled"] else 0.0))
            bank.update({f: body[f] for f in CONTROL_FIELDS if f in body})
            bank["updated_at"] = now_ms()
            return checked_bank(bank, self.view.banks)
        except ValueError as exc:  # InvalidBank, or a bad enabled_ratio
            raise ApiError(400, str(exc)) from None

    async def create_bank(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not name:
            raise ApiError(400, "missing required field 'name'")
        self.unused_name(name, "Bank already exists")
        try:
            fresh = T.BANKS.codec.conform(bank_record(name))
        except InvalidBank as exc:
            raise ApiError(400, str(exc)) from None
        record = self.configured(fresh, body)
        await self.state.write([(T.BANKS, name, record)])
        return record

    async def update_bank(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """The bank's ratio and controls changed (not its name: renaming is the routes' own)."""
        record = self.configured(self.existing_bank(name), body)
        await self.state.write([(T.BANKS, record["name"], record)])
        return record

    async def add_signals(self, bank: str, signals: dict[str, str], metadata: dict[str, str]) -> dict[str, Any]:
        """A new content item of the bank with these signals: {"id", "signals"}."""
        if not signals:
            raise ApiError(400, "No signals given")
        checked = {kind: checked_signal(kind, value) for kind, value in signals.items()}
        content_id = await self.state.next_content_id(bank)
        writes = []
        for kind, value in checked.items():
            key, record = bank_signal_record(bank, content_id, kind, value, metadata)
            writes.append((T.BANK_SIGNALS, key, record))
        await self.state.write(writes)
        return {"id": content_id, "signals": checked}

    async def delete_content(self, bank: str, content_id: str) -> int:
        """Remove a content item of an existing bank; the number removed (0: it was not there)."""
        try:
            entries = self.content_entries(bank, content_id)
        except ApiError:
            return 0
        await self.state.write([(T.BANK_SIGNALS, e.key, None) for e in entries])
        return 1


def routes(state: ApiState) -> list[Route]:
    view = state.view
    renames = asyncio.Lock()  # one rename at a time in this process
    curation = Curation(state)
    existing_bank, unused_name, content_entries = curation.existing_bank, curation.unused_name, curation.content_entries
    configured = curation.configured

    async def banks_index(request: web.Request) -> web.Response:
        return reply([bank_json(b) for _, b in sorted(view.banks.items())])

    async def bank_create(request: web.Request) -> web.Response:
        return reply(bank_json(await curation.create_bank(await json_object(request))), 201)

    async def bank_get(request: web.Request) -> web.Response:
        return reply(bank_json(existing_bank(request.match_info["bank"])))

    async def bank_update(request: web.Request) -> web.Response:
        body = await json_object(request)
        if request.match_info["bank"] not in view.banks and isinstance(body.get("name"), str):
            async with renames:
                finished = await finish_rename(state, request.match_info["bank"], body["name"])
            if finished is not None:
                return reply(bank_json(finished))
        bank = existing_bank(request.match_info["bank"])
        new_name = body.pop("name", None) or bank["name"]
        if new_name != bank["name"]:
            return reply(bank_json(await bank_renamed(bank, new_name, body)))
        return reply(bank_json(await curation.update_bank(bank["name"], body)))

    async def bank_renamed(bank: dict[str, Any], new_name: Any, body: dict[str, Any]) -> dict[str, Any]:
        """Upstream's rename: 400 for a bad name, 403 when a bank has it; content ids kept."""
        async with renames:
            unused_name(new_name, "Bank name already exists")
            return await rename_bank(state, configured(existing_bank(bank["name"]), body), new_name)

    async def controls_get(request: web.Request) -> web.Response:
        return reply(bank_controls(existing_bank(request.match_info["bank"])))

    async def controls_update(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])
        body = await json_object(request)
        unknown = sorted(set(body) - set(CONTROL_FIELDS))
        if unknown:
            raise ApiError(400, f"not a bank control: {', '.join(unknown)} (controls: {', '.join(CONTROL_FIELDS)})")
        return reply(bank_controls(await curation.update_bank(bank["name"], body)))

    async def bank_delete(request: web.Request) -> web.Response:
        name = request.match_info["bank"]
        if name in view.banks:
            writes = [(T.BANK_SIGNALS, e.key, None) for e in list(view.entries(name))]
            await state.write(writes + [(T.BANKS, name, None)])
        return reply({"message": "Done"})

    async def add_signals(bank: str, signals: dict[str, str], metadata: dict[str, str]) -> web.Response:
        return reply(await curation.add_signals(bank, signals, metadata))

    async def content_add(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])["name"]
        hint = request.query.get("content_type")
        if request.query.get("url"):
            fields = await json_object(request) if request.can_read_body and request.content_type == "application/json" else {}
            hashed = await signals_of_url(request.query["url"], hint, state.settings)
        elif request.content_type.startswith("multipart/"):
            data, filename, fields = await uploaded_file(request)
            hashed = await signals_of_bytes(data, filename, hint)
        else:
            raise ApiError(400, "Neither `url` nor multipart file upload was received")
        metadata = content_metadata(fields.get("metadata"), fields.get("note"))
        return await add_signals(bank, {k: sv.value for k, sv in hashed.items()}, metadata)

    async def signal_add(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])["name"]
        body = await json_object(request)
        note = body.pop("note", None)
        if not all(isinstance(v, str) for v in body.values()):
            raise ApiError(400, "signals must be given as {signal_type: value} strings")
        return await add_signals(bank, body, content_metadata(None, note))

    async def content_get(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])
        entries = content_entries(bank["name"], request.match_info["content_id"])
        return reply(content_json(bank, entries, flag(request, "include_signals"), flag(request, "include_metadata", True)))

    async def content_update(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])
        entries = content_entries(bank["name"], request.match_info["content_id"])
        body = await json_object(request)
        changes: dict[str, Any] = {}
        if "disable_until_ts" in body:
            ts = body["disable_until_ts"]
            if isinstance(ts, str) and ts.strip().lstrip("-").isdigit():
                ts = int(ts)
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ApiError(400, "disable_until_ts must be a non-negative integer")
            if ts > time.time() + FIVE_YEARS_S:
                raise ApiError(400, "disable_until_ts must be less than 5 years in the future")
            changes["disable_until_ts"] = ts
        writes = []
        for e in entries:
            metadata = dict(e.metadata)
            if "note" in body:
                metadata.update(content_metadata(None, body["note"]) or {"note": ""})
            writes.append((T.BANK_SIGNALS, e.key, e.to_record(metadata=metadata, **changes)))
        await state.write(writes)
        return reply(content_config_json(bank, content_entries(bank["name"], request.match_info["content_id"])))

    async def content_delete(request: web.Request) -> web.Response:
        bank = existing_bank(request.match_info["bank"])
        return reply({"deleted": await curation.delete_content(bank["name"], request.match_info["content_id"])})

    return [
        Route("GET", "/c/banks", banks_index, "List banks", "Banks"),
        Route("POST", "/c/banks", bank_create, "Create a bank", "Banks", writes=True),
        Route("GET", "/c/bank/{bank}", bank_get, "Get a bank's configuration", "Banks"),
        Route("PUT", "/c/bank/{bank}", bank_update, "Change a bank's configuration or rename it", "Banks", writes=True),
        Route("GET", "/c/bank/{bank}/controls", controls_get, "Get a bank's controls (not in upstream HMA)", "Bank Controls"),
        Route("PUT", "/c/bank/{bank}/controls", controls_update,
              "Change a bank's controls: distances, negative banks, flood limit, confirmed bank, action",
              "Bank Controls", writes=True),
        Route("DELETE", "/c/bank/{bank}", bank_delete, "Delete a bank and its content", "Banks", writes=True),
        Route("POST", "/c/bank/{bank}/content", content_add, "Add content by URL or file upload", "Bank Content",
              writes=True, params=("url", "content_type"), rate=HASH),
        Route("POST", "/c/bank/{bank}/signal", signal_add, "Add signals directly", "Bank Content", writes=True),
        Route("GET", "/c/bank/{bank}/content/{content_id}", content_get, "Get a bank content item", "Bank Content",
              params=("include_signals", "include_metadata")),
        Route("PUT", "/c/bank/{bank}/content/{content_id}", content_update,
              "Disable (disable_until_ts) or annotate a content item", "Bank Content", writes=True),
        Route("DELETE", "/c/bank/{bank}/content/{content_id}", content_delete, "Remove a content item", "Bank Content",
              writes=True),
    ]


def content_metadata(raw: Any, note: Any) -> dict[str, str]:
    """Upstream's content metadata ({content_id, content_uri, json}, or that as a JSON form field)
    and note, as string fields; 400 for what upstream refuses."""
    if isinstance(raw, str) and raw:
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ApiError(400, "metadata form field must be valid JSON") from None
    try:
        return content_metadata_fields(None if raw == "" else raw, note)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _user_metadata(entry: BankEntry) -> dict[str, Any]:
    """The metadata a client gave when banking (content_id, content_uri, json), as it gave it."""
    return {k: (json.loads(v) if k == "json" else v) for k, v in entry.metadata.items() if k in METADATA_KEYS}


def content_json(bank: dict[str, Any], entries: list[BankEntry], signals: bool, metadata: bool) -> dict[str, Any]:
    """Upstream's BankContentResponse (GET): `signals`, `metadata` and `note` only when present,
    `metadata` with every field of upstream's BankedContentMetadata (null when not given)."""
    first = entries[0]
    out: dict[str, Any] = {
        "id": first.bank_content_id,
        "disable_until_ts": first.disable_until_ts,
        "original_media_uri": first.metadata.get(ORIGINAL_MEDIA_URI),
        "bank": bank_json(bank),
    }
    if signals:
        out["signals"] = {e.signal_type: e.value for e in entries}
    user = _user_metadata(first)
    if metadata and user:
        out["metadata"] = {**{k: None for k in METADATA_KEYS}, **user, "collab": None}
    if first.metadata.get("note"):
        out["note"] = first.metadata["note"]
    return out


def content_config_json(bank: dict[str, Any], entries: list[BankEntry]) -> dict[str, Any]:
    """What upstream's PUT /c/bank/<bank>/content/<id> answers: its stored BankContentConfig."""
    first = entries[0]
    return {
        "id": first.bank_content_id,
        "disable_until_ts": first.disable_until_ts,
        "collab_metadata": {},
        "original_media_uri": first.metadata.get(ORIGINAL_MEDIA_URI),
        "bank": bank_json(bank),
        "user_metadata": _user_metadata(first) or None,
        "note": first.metadata.get("note") or None,
    }
