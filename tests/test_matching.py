"""Matching against a bank view: per-bank distance, quality floor, guard statuses, actions."""

from pipeline.banks import bank_signal_record
from pipeline.config import Settings
from pipeline.matching import actions_for, match_batch
from pipeline.sampling import content_coin
from tests.pipeline_env import conformed_bank, flip, hashed, random_pdq, view_with


def test_each_bank_applies_its_own_distance():
    base = random_pdq()
    view = view_with((conformed_bank("WIDE", distances={"pdq": 16}), [base]),
                     (conformed_bank("NARROW", distances={"pdq": 8}), [base]))
    [record] = match_batch([hashed("c", flip(base, 12))], view, Settings())
    assert [(h["bank"], h["distance"], h["threshold"], h["status"]) for h in record["matches"]] == [("WIDE", 12, 16, "match")]


def test_nothing_matched_still_gives_a_record():
    view = view_with((conformed_bank("B"), [random_pdq()]))
    [record] = match_batch([hashed("c", random_pdq())], view, Settings())
    assert record["matches"] == [] and record["content_id"] == "c"


def test_low_quality_is_recorded_and_not_matched():
    code = random_pdq()
    view = view_with((conformed_bank("B"), [code]))
    [record] = match_batch([hashed("c", code, quality=30)], view, Settings())
    assert record["matches"] == [] and "below 50" in record["skipped"]["pdq"]


def test_disabled_content_and_banks_give_disabled_hits_and_no_action():
    code = random_pdq()
    view = view_with((conformed_bank("B", action="remove"), [code]), (conformed_bank("OFF", enabled=False), [code]))
    key, rec = bank_signal_record("B", 1, "pdq", code)
    view.apply_signals([(key, {**rec, "disable_until_ts": 0})])
    [record] = match_batch([hashed("c", code)], view, Settings())
    assert sorted(h["status"] for h in record["matches"]) == ["disabled", "disabled"]
    assert actions_for(record, view) == []


def test_actions_group_hits_by_the_banks_action_name():
    code = random_pdq()
    view = view_with((conformed_bank("A", action="remove"), [code]), (conformed_bank("B", action="review"), [code]))
    [record] = match_batch([hashed("c", code)], view, Settings())
    actions = actions_for(record, view)
    assert [(a["action"], [h["bank"] for h in a["matches"]]) for a in actions] == [("remove", ["A"]), ("review", ["B"])]


def test_removed_signals_stop_matching():
    code = random_pdq()
    view = view_with((conformed_bank("B"), [code]))
    key, _ = bank_signal_record("B", 1, "pdq", code)
    view.apply_signals([(key, None)])
    [record] = match_batch([hashed("c", code)], view, Settings())
    assert record["matches"] == [] and view.signal_count("pdq") == 0


def test_negative_bank_suppresses_and_leaves_no_action():
    code = random_pdq()
    view = view_with((conformed_bank("HARMFUL", suppressed_by=["BENIGN"]), [code]),
                     (conformed_bank("BENIGN", action="none"), [code]))
    [record] = match_batch([hashed("c", flip(code, 3))], view, Settings())
    by_bank = {h["bank"]: h for h in record["matches"]}
    assert by_bank["HARMFUL"]["status"] == "suppressed" and "BENIGN" in by_bank["HARMFUL"]["reason"]
    assert by_bank["BENIGN"]["status"] == "match"
    assert actions_for(record, view) == []


def test_suppression_needs_the_negative_bank_to_match_too():
    code = random_pdq()
    view = view_with((conformed_bank("HARMFUL", suppressed_by=["BENIGN"]), [code]),
                     (conformed_bank("BENIGN", action="none"), [random_pdq()]))
    [record] = match_batch([hashed("c", code)], view, Settings())
    assert [h["status"] for h in record["matches"]] == ["match"]


def test_quarantined_and_flood_disabled_signals():
    code, other = random_pdq(), random_pdq()
    view = view_with((conformed_bank("B"), [code, other]))
    sid = {e.value: e.signal_id for e in view.entries("B")}
    view.apply_quarantine(sid[code], {"signal_id": sid[code], "state": "quarantined", "count": 5001,
                                      "window_ms": 60_000, "sample_content_ids": [], "changed_at": 1})
    view.apply_quarantine(sid[other], {"signal_id": sid[other], "state": "disabled", "count": 0,
                                       "window_ms": 0, "sample_content_ids": [], "changed_at": 1})
    first, second = match_batch([hashed("a", code), hashed("b", other)], view, Settings())
    assert first["matches"][0]["status"] == "quarantined" and "5001" in first["matches"][0]["reason"]
    assert second["matches"][0]["status"] == "disabled"
    view.apply_quarantine(sid[code], {**view.quarantine[sid[code]], "state": "released"})
    [again] = match_batch([hashed("a", code)], view, Settings())
    assert again["matches"][0]["status"] == "match"


def test_the_matchers_flood_guard_stops_hits_past_the_limit():
    from pipeline.flood import LocalFloodGuard

    code = random_pdq()
    view = view_with((conformed_bank("B", flood={"max_matches": 10, "window_ms": 60_000}), [code]))
    guard = LocalFloodGuard(0.001, 0.01, bucket_ms=10_000)
    records = match_batch([hashed(f"c{i}", code) for i in range(25)], view, Settings(), guard)
    statuses = [r["matches"][0]["status"] for r in records]
    assert statuses == ["match"] * 10 + ["quarantined"] * 15
    assert "quarantine pending" in records[-1]["matches"][0]["reason"]
    assert sum(len(actions_for(r, view)) for r in records) == 10


def test_a_bank_fraction_samples_uploads_by_content_id_the_same_way_each_time():
    code = random_pdq()
    view = view_with((conformed_bank("HALF", enabled_ratio=0.5, action="remove"), [code]),
                     (conformed_bank("ALL", action="review"), [code]))
    uploads = [hashed(f"c{i}", code) for i in range(400)]
    first = match_batch(uploads, view, Settings())
    again = match_batch(uploads, view, Settings())
    half = [next(h for h in r["matches"] if h["bank"] == "HALF") for r in first]
    assert [h["status"] for h in half] == [next(h for h in r["matches"] if h["bank"] == "HALF")["status"] for r in again]
    kept = sum(h["status"] == "match" for h in half)
    assert 160 <= kept <= 240  # 400 uploads at 0.5: the binomial spread is 10
    for record, hit in zip(first, half):
        expected = "match" if content_coin(record["content_id"]) < 0.5 else "disabled"
        assert hit["status"] == expected
        assert [a["action"] for a in actions_for(record, view)] == (["remove", "review"] if expected == "match" else ["review"])
    out = next(h for h in half if h["status"] == "disabled")
    assert "sampled out by the bank's enabled_ratio" in out["reason"] and "enabled_ratio 0.5" in out["reason"]
    assert all(h["status"] == "match" for r in first for h in r["matches"] if h["bank"] == "ALL")


def test_a_sampled_out_negative_bank_does_not_suppress():
    code = random_pdq()
    view = view_with((conformed_bank("HARMFUL", suppressed_by=["BENIGN"]), [code]),
                     (conformed_bank("BENIGN", action="none", enabled_ratio=0.5), [code]))
    out_id = next(f"c{i}" for i in range(100) if content_coin(f"c{i}") >= 0.5)
    [record] = match_batch([hashed(out_id, code)], view, Settings())
    assert {h["bank"]: h["status"] for h in record["matches"]} == {"HARMFUL": "match", "BENIGN": "disabled"}


def test_without_sampling_a_bank_fraction_keeps_every_upload_and_zero_stays_off():
    code = random_pdq()
    view = view_with((conformed_bank("RARE", enabled_ratio=0.01), [code]),
                     (conformed_bank("OFF", enabled_ratio=0.0, enabled=False), [code]))
    out_id = next(f"c{i}" for i in range(100) if content_coin(f"c{i}") >= 0.01)
    [sampled] = match_batch([hashed(out_id, code)], view, Settings())
    [kept] = match_batch([hashed(out_id, code)], view, Settings(), sample=False)
    assert {h["bank"]: h["status"] for h in sampled["matches"]} == {"RARE": "disabled", "OFF": "disabled"}
    assert {h["bank"]: h["status"] for h in kept["matches"]} == {"RARE": "match", "OFF": "disabled"}
