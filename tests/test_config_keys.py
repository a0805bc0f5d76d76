"""hma.config: the records its writers make are the ones every bank view reads."""

from __future__ import annotations

from pipeline import topics as T
from pipeline.config_keys import (
    CONTENT_ID_BASE, RESET_AT, is_signal_type_ratio_key, setting_record, signal_type_ratio_key,
)
from pipeline.state.bank_view import BankView


def test_a_view_reads_what_the_setting_records_say():
    view = BankView()
    assert (view.signal_type_ratio("pdq"), view.reset_at_ms, view.content_id_base) == (1.0, 0, 0)
    writes = [
        (signal_type_ratio_key("pdq"), setting_record(signal_type_ratio_key("pdq"), 0.25)),
        (RESET_AT, setting_record(RESET_AT, 1_700_000_000_000, 1_700_000_000_000)),
        (CONTENT_ID_BASE, setting_record(CONTENT_ID_BASE, 42)),
    ]
    view.apply(T.CONFIG, [(key, T.CONFIG.codec.conform(record)) for key, record in writes])
    assert (view.signal_type_ratio("pdq"), view.signal_type_ratio("md5")) == (0.25, 1.0)
    assert (view.reset_at_ms, view.content_id_base) == (1_700_000_000_000, 42)
    view.apply(T.CONFIG, [(signal_type_ratio_key("pdq"), None)])
    assert view.signal_type_ratio("pdq") == 1.0


def test_only_signal_type_keys_are_ratios():
    assert is_signal_type_ratio_key(signal_type_ratio_key("video_md5"))
    assert not is_signal_type_ratio_key(RESET_AT) and not is_signal_type_ratio_key(CONTENT_ID_BASE)


def test_a_record_names_its_key_and_is_stamped():
    record = setting_record(RESET_AT, 5)
    assert record["name"] == RESET_AT and record["number"] == 5.0 and record["changed_at"] > 0
