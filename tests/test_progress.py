"""Progress: a bar on a terminal; on anything else (a log file), structured log lines, no escapes."""

import io
import logging

from pipeline.logs import KeyValueFormatter
from pipeline.progress import BAR_WIDTH, ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_render_shows_share_counts_rate_and_eta():
    bar = ProgressBar("load", 1000, "signals", out=io.StringIO())
    line = bar.render(250, 5.0, "note here")
    assert line.startswith("load [" + "#" * round(BAR_WIDTH / 4) + "." * (BAR_WIDTH - round(BAR_WIDTH / 4)) + "]")
    assert " 25% 250/1,000 signals, 50/s, 5s elapsed, ETA 15s, note here" in line


def test_render_when_done_or_empty():
    assert "100% 10/10" in ProgressBar("x", 10, out=io.StringIO()).render(10, 2.0)
    assert "ETA -" in ProgressBar("x", 10, out=io.StringIO()).render(10, 2.0)
    assert "100% 0/0" in ProgressBar("x", 0, out=io.StringIO()).render(0, 0.0)


def test_a_terminal_gets_the_bar_redrawn_in_place_and_no_log_lines(caplog):
    out = Terminal()
    bar = ProgressBar("load", 100, out=out)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        bar.update(100, final=True)
    assert out.getvalue().startswith("\r" + "load [") and out.getvalue().endswith("\n")
    assert caplog.records == []


def test_not_a_terminal_gets_structured_log_lines_and_nothing_drawn(caplog):
    out = io.StringIO()
    bar = ProgressBar("replay", 100, out=out, log_every_s=3600)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        bar.update(10)  # within the interval: not logged
        bar.update(100, "3 written", final=True)
    assert out.getvalue() == ""
    [record] = caplog.records
    assert record.getMessage() == "progress"
    assert (record.task, record.done, record.total, record.unit, record.final, record.note) == (
        "replay", 100, 100, "records", True, "3 written")
    line = KeyValueFormatter().format(record)
    assert "msg=progress task=replay done=100 total=100 unit=records" in line
    assert "\r" not in line and "\x1b" not in line and "\n" not in line


def test_each_interval_gives_a_log_line(caplog):
    bar = ProgressBar("load", 1000, "signals", out=io.StringIO(), log_every_s=0)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        for done in (100, 200, 300):
            bar.update(done)
    assert [r.done for r in caplog.records] == [100, 200, 300]
    assert all(r.eta_s is None or r.eta_s >= 0 for r in caplog.records)
