"""What changed between an upload's match record and its explanation now, entry by entry."""

from pipeline.rerun import what_changed


def hit(bank, content_id, status="match", distance=3, threshold=31, reason=""):
    return {"bank": bank, "bank_content_id": content_id, "signal_type": "pdq", "signal_id": f"s{content_id}",
            "distance": distance, "threshold": threshold, "status": status, "reason": reason}


def verdict(content_id, verdict_, distance=3, threshold=31, reason="why"):
    return {"bank_content_id": content_id, "signal_type": "pdq", "distance": distance, "threshold": threshold,
            "verdict": verdict_, "reason": reason}


def explanation(banks, skipped=""):
    return {"signals": {"pdq": {"value": "ab", "quality": None, "skipped": skipped}},
            "banks": {name: {"nearest": nearest} for name, nearest in banks.items()}}


def test_the_same_decision_changes_nothing():
    assert what_changed({"matches": [hit("A", 1)], "skipped": {}}, explanation({"A": [verdict(1, "match")]})) == []


def test_each_kind_of_change_is_named():
    then = {"matches": [hit("A", 1), hit("B", 2), hit("C", 3, threshold=31), hit("D", 4)], "skipped": {}}
    now = explanation({
        "A": [verdict(1, "quarantined", reason="quarantined since ...")],  # status changed
        "B": [],  # removed
        "C": [verdict(3, "too_far", threshold=2, reason="too far: distance 3 > threshold 2")],  # distance changed
        "D": [verdict(4, "match")],  # unchanged
        "E": [verdict(5, "match"), verdict(6, "too_far", distance=40)],  # one added; the far one is no hit
    }, skipped="quality 20 below the floor 50")
    changes = {(c.kind, c.bank): c.text for c in what_changed(then, now)}
    assert changes[("status", "A")] == "A content 1 (pdq): match then, quarantined now: quarantined since ..."
    assert changes[("removed", "B")].startswith("B content 2 (pdq): match then; now no longer banked")
    assert changes[("threshold", "C")] == "C content 3 (pdq): threshold 31 then, 2 now"
    assert changes[("status", "C")].startswith("C content 3 (pdq): match then, too far now")
    assert changes[("added", "E")].startswith("E content 5 (pdq): no hit then, match now at distance 3")
    assert changes[("skipped", "")] == "pdq: searched then, quality 20 below the floor 50 now"
    assert not any(bank == "D" for _, bank in changes) and len(changes) == 6
