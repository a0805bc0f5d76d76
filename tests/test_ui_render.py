"""The UI's HTML building blocks: what a user or a bank holds is escaped; long lists are paged."""

import re

import numpy as np

from pipeline.api.ui.frame import PAGE, pager
from pipeline.api.ui.render import Html, link, render, table, tag
from pipeline.api.activity import LATENCY_EDGES_MS, percentile_ms
from pipeline.api.ui.svg import CELL, bit_grid, lines


def test_text_is_escaped_and_markup_built_here_is_not():
    cell = "<script>alert(1)</script>"
    html = table(["name"], [[cell], [tag("b", "bold & <b>")]])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>bold &amp; &lt;b&gt;</b>" in html
    assert 'href="/ui/match?signal=%22%3E%3Cx"' in link("/ui/match", "x", signal='"><x')


def test_every_template_placeholder_is_filled_and_escaped():
    page = render("layout.html", title="<T>", body=Html("<p>ok</p>"), message="", who="")
    assert "<title>&lt;T&gt; · HMA Streams</title>" in page and "<p>ok</p>" in page


def test_a_long_list_is_paged():
    assert pager("/ui/banks", 0, PAGE) == ""
    first = pager("/ui/banks", 0, 10_000_000)
    assert f"1–{PAGE} of 10,000,000" in first and f"offset={PAGE}" in first and "offset=0" not in first
    last = pager("/ui/banks", 10_000_000 - 10, 10_000_000)
    assert "10,000,000 of 10,000,000" in last and f"offset={10_000_000 - 10 - PAGE}" in last


def test_a_second_list_on_a_page_is_paged_by_its_own_offset():
    second = pager("/ui/recent", PAGE, 3 * PAGE, offset_param="near_offset", signal="ab")
    assert f"near_offset={2 * PAGE}" in second and "near_offset=0" in second and "signal=ab" in second
    assert "?offset=" not in second and "&offset=" not in second


def test_the_bit_grid_fills_exactly_the_differing_bits():
    a = "00" * 32
    b = "80" + "00" * 30 + "01"  # bit 0 and bit 255
    grid = bit_grid(a, b)
    assert grid.count('class="bit-differs"') == 2 and grid.count("<rect") == 256
    filled = re.findall(r'<rect x="(\d+)" y="(\d+)"[^>]*class="bit-differs"', grid)
    assert filled == [("0", "0"), (str(15 * CELL), str(15 * CELL))]  # top left and bottom right


def test_a_chart_draws_each_series_and_says_when_it_has_no_data():
    chart = lines({"p50": [(0, 10.0), (30_000, 20.0)], "p99": [(30_000, 400.0)], "empty": []}, 0, 60_000, " ms")
    assert chart.count("<polyline") == 1 and chart.count("<circle") == 1
    assert "p50 20 ms" in chart and "p99 400 ms" in chart and "empty (no data)" in chart
    assert "nothing measured yet" in lines({"a": []}, 0, 60_000)


def test_latency_percentiles_come_from_the_histogram():
    histogram = np.zeros(len(LATENCY_EDGES_MS) + 1, np.int64)
    assert percentile_ms(histogram, 0.5) is None
    histogram[np.searchsorted(LATENCY_EDGES_MS, 100)] += 99
    histogram[np.searchsorted(LATENCY_EDGES_MS, 5000)] += 1
    assert 100 <= percentile_ms(histogram, 0.5) < 110 and 100 <= percentile_ms(histogram, 0.99) < 110
    assert 5000 <= percentile_ms(histogram, 1.0) < 5500
