"""Progress of long work run from the command line (replay, benches): a bar on a terminal, log
lines elsewhere.

On a terminal the bar is redrawn in place on one line, at most once a second. Where the stream is
not a terminal (a log file, CI, a pipe) nothing is drawn: every `log_every_s` the progress is a
structured log line ("progress", with task, done, total, rate and ETA as fields), so logs hold no
cursor movements and every line stands on its own.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

BAR_WIDTH = 30
log = logging.getLogger(__name__)


class ProgressBar:
    def __init__(self, label: str, total: int, unit: str = "records", out: TextIO | None = None,
                 log_every_s: float = 10.0) -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.out = out if out is not None else sys.stderr
        self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.every_s = 1.0 if self.tty else log_every_s
        self.started = self.last = time.monotonic()
        self.done = 0

    def update(self, done: int, note: str = "", final: bool = False) -> None:
        """Show `done` of the total (with an optional note after the numbers)."""
        self.done = done
        now = time.monotonic()
        if not final and now - self.last < self.every_s:
            return
        self.last = now
        if self.tty:
            print("\r" + self.render(done, now - self.started, note), end="\n" if final else "",
                  file=self.out, flush=True)
        else:
            log.info("progress", extra=self.fields(done, now - self.started, note, final))

    def finish(self, note: str = "") -> None:
        self.update(self.done, note, final=True)

    def _rate_and_eta(self, done: int, elapsed_s: float) -> tuple[float, float | None]:
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        return rate, ((self.total - done) / rate if rate > 0 and done < self.total else None)

    def fields(self, done: int, elapsed_s: float, note: str = "", final: bool = False) -> dict[str, Any]:
        """The progress as a log line's fields."""
        rate, eta = self._rate_and_eta(done, elapsed_s)
        fields: dict[str, Any] = {
            "task": self.label, "done": done, "total": self.total, "unit": self.unit, "per_s": round(rate),
            "elapsed_s": round(elapsed_s), "eta_s": None if eta is None else round(eta), "final": final,
        }
        if note:
            fields["note"] = note
        return fields

    def render(self, done: int, elapsed_s: float, note: str = "") -> str:
        """The bar, as a terminal shows it."""
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = int(round(share * BAR_WIDTH))
        rate, eta = self._rate_and_eta(done, elapsed_s)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        text = (f"{self.label} [{bar}] {share:4.0%} {done:,}/{self.total:,} {self.unit}, "
                f"{rate:,.0f}/s, {elapsed_s:,.0f}s elapsed, ETA {'-' if eta is None else f'{eta:,.0f}s'}")
        return f"{text}, {note}" if note else text
