"""Reviewers' feedback as the API reports it: the decisions on each piece of content and the
harmful/benign tallies of each signal, since the last factory reset."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pipeline import topics as T
from pipeline.config_keys import RESET_AT
from pipeline.state.bank_view import BankView
from pipeline.state.log_reader import Change


class FeedbackTallies:
    """Follows hma.feedback (and hma.config for resets) next to a bank view: see BankViewService.listeners."""

    def __init__(self, view: BankView) -> None:
        self.view = view  # for the reset time (hma.config), which the view applies first
        self.tallies: dict[str, dict[str, int]] = defaultdict(lambda: {"harmful": 0, "benign": 0})
        self.feedback: dict[str, list[dict[str, Any]]] = defaultdict(list)

    @property
    def listeners(self) -> dict[T.TopicSpec, Any]:
        return {T.FEEDBACK: self.apply, T.CONFIG: self.apply}

    def apply(self, spec: T.TopicSpec, changes: list[Change]) -> None:
        if spec is T.CONFIG:
            if any(key == RESET_AT for key, _ in changes):
                self._forget_before(self.view.reset_at_ms)
            return
        for _key, record in changes:
            if record is not None and record["decided_at"] >= self.view.reset_at_ms:
                self._count(record)

    def _count(self, record: dict[str, Any]) -> None:
        self.feedback[record["content_id"]].append(record)
        for sid in record["signals"]:
            self.tallies[sid][record["verdict"]] += 1

    def _forget_before(self, reset_at_ms: int) -> None:
        """A factory reset: feedback (a delete-policy topic) is ignored from before it."""
        kept = [r for records in self.feedback.values() for r in records if r["decided_at"] >= reset_at_ms]
        self.feedback.clear()
        self.tallies.clear()
        for record in kept:
            self._count(record)

    def decisions(self, content_id: str) -> list[dict[str, Any]]:
        return self.feedback.get(content_id, [])

    def of_signal(self, signal_id: str) -> dict[str, int] | None:
        """The signal's tallies; None when no feedback named it."""
        return self.tallies.get(signal_id)
