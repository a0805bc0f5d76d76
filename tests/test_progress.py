"""The command-line progress bar: what it draws, and that logs get whole lines."""

import io

from pipeline.progress import BAR_WIDTH, ProgressBar


def test_render_shows_share_counts_rate_and_eta():
    bar = ProgressBar("load", 1000, "signals", out=io.StringIO())
    line = bar.render(250, 5.0, "note here")
    assert line.startswith("load [" + "#" * round(BAR_WIDTH / 4) + "." * (BAR_WIDTH - round(BAR_WIDTH / 4)) + "]")
    assert " 25% 250/1,000 signals, 50/s, 5s elapsed, ETA 15s, note here" in line


def test_render_when_done_or_empty():
    assert "100% 10/10" in ProgressBar("x", 10, out=io.StringIO()).render(10, 2.0)
    assert "ETA -" in ProgressBar("x", 10, out=io.StringIO()).render(10, 2.0)
    assert "100% 0/0" in ProgressBar("x", 0, out=io.StringIO()).render(0, 0.0)


def test_not_a_terminal_gets_a_line_per_update_and_the_final_one_always():
    out = io.StringIO()
    bar = ProgressBar("replay", 100, out=out, log_every_s=3600)
    bar.update(10)  # within the interval: not shown
    bar.update(100, final=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in out.getvalue() and "100/100" in lines[0]
