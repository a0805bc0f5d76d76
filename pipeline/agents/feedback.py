"""feedback: reviewers' confirm / deconfirm decisions (hma.feedback) applied to the banks.

Harmful (confirm): each named signal is copied into its bank's confirmed bank, or tagged
`confirmed` in place when the bank names none. Benign (deconfirm): each named signal is disabled
in every bank holding it, for the bank's `deconfirm_disable_s` or for good. Per-signal tallies
are kept in a Faust table (RocksDB, changelog-backed).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust

from pipeline import topics as T
from pipeline.app import PipelineContext, state_table
from pipeline.banks import bank_signal_record, entry_record
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
                changes.append((entry.key, entry_record(entry, disable_until_ts=until)))
            elif bank["confirmed_bank"] and bank["confirmed_bank"] in view.banks:
                target = bank["confirmed_bank"]
                if any(e.bank == target for e in view.entries_with_signal(sid)):
                    continue
                meta = {**entry.metadata, "confirmed_from": f"{entry.bank}/{entry.bank_content_id}",
                        "confirmed_by_content": feedback["content_id"]}
                key, record = bank_signal_record(target, 0, entry.signal_type, entry.value, meta)
                changes.append((key, {**record, "bank_content_id": None}))
            else:
                changes.append((entry.key, entry_record(entry, metadata={**entry.metadata, "confirmed": "true"})))
    return changes


def register(app: faust.App, ctx: PipelineContext) -> None:
    tallies = state_table(app, "feedback-tallies", default=dict, partitions=1)

    @app.agent(ctx.topic(T.FEEDBACK), name=f"{app.conf.id}.feedback")
    async def feedback(stream: faust.StreamT) -> None:
        view = await ctx.bank_view()
        async for _event, decision in ctx.records(stream, T.FEEDBACK, STAGE):
            for sid in decision["signals"]:
                tally = dict(tallies[sid])
                tally[decision["verdict"]] = tally.get(decision["verdict"], 0) + 1
                tallies[sid] = tally
            for key, record in signal_changes(view, decision):
                if record["bank_content_id"] is None:
                    record["bank_content_id"] = await ctx.claim_content_id(record["bank"])
                await ctx.send(T.BANK_SIGNALS, key, record, STAGE)
            log.info("feedback applied", extra={"content_id": decision["content_id"], "verdict": decision["verdict"],
                                                "signals": len(decision["signals"])})
