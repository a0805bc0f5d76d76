"""Output ids depend on the input's identity only, so a record written again after a crash keeps its id."""

from pipeline import event_ids
from pipeline.deadletters import dead_letter

UPLOAD_AT = ("hma.uploads", 1, 41)
UPLOAD = {"content_id": "c", "submitted_at": 1764000000000}


def test_the_same_upload_hashed_twice_has_one_id_and_other_uploads_others():
    assert event_ids.hashed_upload(UPLOAD_AT, UPLOAD) == event_ids.hashed_upload(("hma.uploads", 1, 41), dict(UPLOAD))
    assert event_ids.hashed_upload(UPLOAD_AT, UPLOAD) != event_ids.hashed_upload(("hma.uploads", 1, 42), UPLOAD)
    assert event_ids.hashed_upload(UPLOAD_AT, UPLOAD) != event_ids.hashed_upload(("hma.uploads", 0, 41), UPLOAD)


def test_an_upload_at_an_offset_used_before_the_topic_was_made_again_is_another_event():
    again = {**UPLOAD, "submitted_at": UPLOAD["submitted_at"] + 1}
    assert event_ids.hashed_upload(UPLOAD_AT, UPLOAD) != event_ids.hashed_upload(UPLOAD_AT, again)
    assert event_ids.hashed_upload(UPLOAD_AT, UPLOAD) != event_ids.hashed_upload(UPLOAD_AT, {**UPLOAD, "content_id": "d"})


def test_a_hash_record_written_twice_leads_to_one_match_id():
    hashed = {"content_id": "c", "event_id": event_ids.hashed_upload(UPLOAD_AT, UPLOAD)}
    first, again = event_ids.match(hashed, ("hma.hashes", 0, 7)), event_ids.match(dict(hashed), ("hma.hashes", 0, 90))
    assert first == again
    assert first != event_ids.match({"content_id": "c", "event_id": event_ids.hashed_upload(("hma.uploads", 1, 42), UPLOAD)},
                                    ("hma.hashes", 0, 7))


def test_a_hash_record_without_id_is_named_by_its_place_in_hma_hashes():
    hashed = {"content_id": "c", "event_id": None}
    assert event_ids.match(hashed, ("hma.hashes", 0, 7)) == event_ids.match({"content_id": "c"}, ("hma.hashes", 0, 7))
    assert event_ids.match(hashed, ("hma.hashes", 0, 7)) != event_ids.match(hashed, ("hma.hashes", 0, 8))


def test_actions_and_flood_hits_follow_their_match():
    match = event_ids.match({"event_id": "x"}, ("hma.hashes", 0, 1))
    assert event_ids.action(match, "review") == event_ids.action(match, "review")
    assert event_ids.action(match, "review") != event_ids.action(match, "delete")
    assert event_ids.flood_hit(match, "s1") != event_ids.flood_hit(match, "s2")
    assert event_ids.action(None, "review") is None and event_ids.flood_hit(None, "s1") is None


def test_retro_match_ids_do_not_depend_on_the_order_of_hits():
    hits = [{"bank": "b", "bank_content_id": 1, "signal_id": "s1"}, {"bank": "b", "bank_content_id": 2, "signal_id": "s2"}]
    at = ("hma.hashes", 0, 3)
    assert event_ids.retro_match({}, at, hits) == event_ids.retro_match({}, at, hits[::-1])
    assert event_ids.retro_match({}, at, hits) != event_ids.retro_match({}, at, hits[:1])


def test_dead_letters_carry_the_id_of_the_failed_input_and_stage():
    a = dead_letter("hma.uploads", 0, 5, b"k", b"v", "bad", "hasher", max_value_bytes=100)
    b = dead_letter("hma.uploads", 0, 5, b"k", b"v", "bad", "hasher", max_value_bytes=100)
    assert a["event_id"] == b["event_id"] == event_ids.dead_letter(("hma.uploads", 0, 5), b"k", "hasher")
    assert a["event_id"] != dead_letter("hma.uploads", 0, 5, b"k", b"v", "bad", "matcher", 100)["event_id"]
