"""The explanation of a lookup against a bank view: nearest entries past the threshold, and the
guard's verdicts with their reasons (the end-to-end forms are in tests/test_explain_api.py)."""

from pipeline.banks import bank_signal_record
from pipeline.config import Settings
from pipeline.config_keys import signal_type_ratio_key
from pipeline.explain import explain
from pipeline.sampling import content_coin
from tests.pipeline_env import conformed_bank, flip, hashed, random_pdq, view_with


def nearest(result: dict, bank: str) -> list[dict]:
    return result["banks"][bank]["nearest"]


def test_an_entry_just_past_the_threshold_is_too_far_with_its_distance():
    base = random_pdq()
    view = view_with((conformed_bank("B", distances={"pdq": 10}), [base]))
    result = explain(hashed("c", flip(base, 11)), view, Settings())
    [entry] = nearest(result, "B")
    assert (entry["verdict"], entry["distance"], entry["threshold"]) == ("too_far", 11, 10)
    assert entry["reason"] == "too far: distance 11 > threshold 10" and result["matched"] == []


def test_only_the_k_nearest_of_each_bank_are_listed_nearest_first():
    base = random_pdq()
    view = view_with((conformed_bank("B", distances={"pdq": 4}), [flip(base, d) for d in (9, 1, 30, 5, 2)]),
                     (conformed_bank("EMPTY"), []))
    result = explain(hashed("c", base), view, Settings(), nearest=3)
    assert [(e["distance"], e["verdict"]) for e in nearest(result, "B")] == [(1, "match"), (2, "match"), (5, "too_far")]
    assert nearest(result, "EMPTY") == [] and result["matched"] == ["B"]


def test_a_suppressed_hit_names_the_negative_bank_entry():
    code = random_pdq()
    view = view_with((conformed_bank("BENIGN", action="none"), [code]),
                     (conformed_bank("HARMFUL", suppressed_by=["BENIGN"]), [code]))
    [entry] = nearest(explain(hashed("c", code), view, Settings()), "HARMFUL")
    assert entry["verdict"] == "suppressed"
    assert entry["suppressed_by"] == {"bank": "BENIGN", "bank_content_id": 1, "signal_id": entry["signal_id"], "distance": 0}
    assert "BENIGN" in entry["reason"] and "content 1" in entry["reason"]


def test_a_disabled_signal_says_until_when():
    code = random_pdq()
    view = view_with((conformed_bank("B"), []))
    key, record = bank_signal_record("B", 7, "pdq", code)
    view.apply_signals([(key, {**record, "disable_until_ts": 4_102_444_800})])
    [entry] = nearest(explain(hashed("c", code), view, Settings()), "B")
    assert entry["verdict"] == "disabled" and entry["disabled_until"] == "2100-01-01T00:00:00Z"
    assert "until 2100-01-01T00:00:00Z" in entry["reason"]


def test_a_quarantined_signal_says_since_when_and_how_often():
    code = random_pdq()
    view = view_with((conformed_bank("B"), [code]))
    sid = next(view.entries("B")).signal_id
    view.apply_quarantine(sid, {"signal_id": sid, "state": "quarantined", "count": 120, "window_ms": 60_000,
                                "sample_content_ids": [], "changed_at": 1_767_225_600_000})
    [entry] = nearest(explain(hashed("c", code), view, Settings()), "B")
    assert entry["verdict"] == "quarantined" and entry["quarantine"]["count"] == 120
    assert "since 2026-01-01T00:00:00Z" in entry["reason"]


def test_skipped_signal_types_give_their_reason_for_every_entry():
    code = random_pdq()
    view = view_with((conformed_bank("B"), [code]))
    low = explain(hashed("c", code, quality=10), view, Settings())
    assert nearest(low, "B")[0]["verdict"] == "skipped" and "quality 10" in nearest(low, "B")[0]["reason"]
    view.apply_setting(signal_type_ratio_key("pdq"), {"number": 0.5})
    out_id = next(f"c{i}" for i in range(100) if content_coin(f"c{i}") >= 0.5)
    sampled = explain(hashed(out_id, code), view, Settings())
    assert f"its coin {content_coin(out_id):.3f} >= enabled_ratio 0.5" in sampled["signals"]["pdq"]["skipped"]
    assert nearest(sampled, "B")[0]["verdict"] == "skipped"


def test_a_disabled_bank_is_named_in_the_verdict():
    code = random_pdq()
    view = view_with((conformed_bank("OFF", enabled=False), [code]))
    [entry] = nearest(explain(hashed("c", code), view, Settings()), "OFF")
    assert entry["verdict"] == "disabled" and entry["reason"] == "bank OFF is disabled"


def test_a_bank_fraction_says_the_content_is_sampled_out_with_its_coin():
    code = random_pdq()
    view = view_with((conformed_bank("HALF", enabled_ratio=0.5), [code]))
    out_id = next(f"c{i}" for i in range(100) if content_coin(f"c{i}") >= 0.5)
    in_id = next(f"c{i}" for i in range(100) if content_coin(f"c{i}") < 0.5)
    [entry] = nearest(explain(hashed(out_id, code), view, Settings()), "HALF")
    assert entry["verdict"] == "disabled"
    assert entry["reason"] == (f"bank HALF sampled out by the bank's enabled_ratio for this content "
                               f"(its coin {content_coin(out_id):.3f} >= enabled_ratio 0.5)")
    kept = explain(hashed(in_id, code), view, Settings())
    assert nearest(kept, "HALF")[0]["verdict"] == "match" and kept["matched"] == ["HALF"]
