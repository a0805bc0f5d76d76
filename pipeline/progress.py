"""A progress bar on one terminal line, for long work run from the command line (replay, benches).

Redrawn at most once a second; on a stream that is not a terminal (a log file, CI) each update is
a line of its own, every `log_every_s`, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

BAR_WIDTH = 30


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
        line = self.render(done, now - self.started, note)
        if self.tty:
            print("\r" + line, end="\n" if final else "", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)

    def finish(self, note: str = "") -> None:
        self.update(self.done, note, final=True)

    def render(self, done: int, elapsed_s: float, note: str = "") -> str:
        share = min(done / self.total, 1.0) if self.total else 1.0
        filled = int(round(share * BAR_WIDTH))
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        eta = f"{(self.total - done) / rate:,.0f}s" if rate > 0 and done < self.total else "-"
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        text = (f"{self.label} [{bar}] {share:4.0%} {done:,}/{self.total:,} {self.unit}, "
                f"{rate:,.0f}/s, {elapsed_s:,.0f}s elapsed, ETA {eta}")
        return f"{text}, {note}" if note else text
