"""feedback: reviewers' confirm / deconfirm decisions (hma.feedback) applied to the banks.

Harmful (confirm): each named signal is copied into its bank's confirmed bank, or tagged
`confirmed` in place when the bank names none. Benign (deconfirm): each named signal is disabled
in every bank holding it, for the bank's `deconfirm_disable_s` or for good. Per-signal tallies
are the API's (pipeline/api/state.py rebuilds them from hma.feedback); the worker keeps none.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from pipeline import topics as T
from pipeline.banks import bank_signal_record
from pipeline.services.worker import WorkerServices
from pipeline.state.bank_view import BankView

log = logging.getLogger(__name__)
STAGE = "feedback"


def signal_changes(view: BankView, feedback: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The hma.bank-signals records that a feedback decision implies.

    Copies into a confirmed bank are new content: their `bank_content_id` is None, to be claimed.
    """
    changes: list[tuple[str, dict[str, Any]]] = []
    for sid in feedback["signals"]:
        for entry in view.entries_with_signal(sid):
            bank = view.banks.get(entry.bank)
            if bank is None:
                continue
            if feedback["verdict"] == "benign":
                period = bank["deconfirm_disable_s"]
                until = 0 if period <= 0 else int(time.time()) + period
                changes.append((entry.key, entry.to_record(disable_until_ts=until)))
            elif bank["confirmed_bank"] and bank["confirmed_bank"] in view.banks:
                target = bank["confirmed_bank"]
                if any(e.bank == target for e in view.entries_with_signal(sid)):
                    continue
                meta = {**entry.metadata, "confirmed_from": f"{entry.bank}/{entry.bank_content_id}",
                        "confirmed_by_content": feedback["content_id"]}
                key, record = bank_signal_record(target, 0, entry.signal_type, entry.value, meta)
                changes.append((key, {**record, "bank_content_id": None}))
            else:
                changes.append((entry.key, entry.to_record(metadata={**entry.metadata, "confirmed": "true"})))
    return changes


def register(app: faust.App, services: WorkerServices) -> None:
    @app.agent(services.topic(T.FEEDBACK), name=f"{app.conf.id}.feedback")
    async def feedback(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        async for _event, decision in services.events.records(stream, T.FEEDBACK, STAGE):
            for key, record in signal_changes(view, decision):
                if record["bank_content_id"] is None:
                    record["bank_content_id"] = await services.content_ids.claim_one(record["bank"])
                await services.output.send(T.BANK_SIGNALS, key, record, STAGE)
            log.info("feedback applied", extra={"content_id": decision["content_id"], "verdict": decision["verdict"],
                                                "signals": len(decision["signals"])})
