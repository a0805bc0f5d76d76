"""Signal types as plug-ins: the registry from python-threatexchange and its extensions, and vPDQ
matching decided as python-threatexchange's vPDQ matcher decides, on edited copies of videos."""

from __future__ import annotations

import itertools

import pytest

from pipeline.banks import bank_signal_record
from pipeline.hashing import hash_content
from pipeline.signal_types import SIGNAL_TYPES, ExactPlugin, InvalidSignal, SignalPlugin, signal_type
from pipeline.state.bank_view import BankView
from tests.pipeline_env import EDITS, SHIPPED_MEDIA, UNRELATED, VIDEO, ffmpeg, media_set, vpdq_decision

FRAME_DISTANCES = (0, 4, 10, 20, 31, 48)  # per-bank vPDQ distances the decisions are compared at


def test_the_registry_is_python_threatexchanges_signal_types_and_extensions():
    from threatexchange.cli.main import _DEFAULT_SIGNAL_TYPES

    assert {t.get_name() for t in _DEFAULT_SIGNAL_TYPES} | {"vpdq"} <= set(SIGNAL_TYPES)
    # the project's own plug-ins for the types it indexes itself, a hash map for exact ones, the rest generic
    assert type(SIGNAL_TYPES["pdq"]).__module__ == "pipeline.plugins.pdq"
    assert type(SIGNAL_TYPES["vpdq"]).__module__ == "pipeline.plugins.vpdq"
    assert all(isinstance(SIGNAL_TYPES[k], ExactPlugin) for k in ("video_md5", "video_sha256", "url", "url_md5"))
    assert type(SIGNAL_TYPES["raw_text"]) is SignalPlugin
    assert SIGNAL_TYPES["url"].content_types == {"url"} and SIGNAL_TYPES["raw_text"].content_types == {"text"}
    with pytest.raises(InvalidSignal, match="unknown signal type 'sha1'"):
        signal_type("sha1")


def test_text_and_urls_hash_as_python_threatexchange_hashes_them():
    from threatexchange.signal_type.url_md5 import UrlMD5Signal

    text = "The quick brown fox jumps over the lazy dog"
    assert hash_content("text", text.encode())["raw_text"].value == text
    url = "https://example.org/some/page?x=1"
    signals = hash_content("url", url.encode())
    assert signals["url"].value == url and signals["url_md5"].value == UrlMD5Signal.hash_from_str(url)
    video = SHIPPED_MEDIA.path(VIDEO).read_bytes()
    import hashlib
    assert hash_content("video", video)["video_sha256"].value == hashlib.sha256(video).hexdigest()


def test_raw_text_matches_by_python_threatexchanges_rule_in_a_bank_view():
    view = BankView()
    view.apply_bank("TEXT", {"name": "TEXT"})
    banked = "We the People of the United States, in Order to form a more perfect Union"
    view.apply_signals([bank_signal_record("TEXT", 1, "raw_text", banked)])
    edited = banked.replace("People", "Peeple")  # one letter in 72: within 5%
    [[near], far] = view.search("raw_text", [edited, "a different text altogether, nothing alike"], 0)
    assert near.entry.value == banked and far == []
    view.apply_signals([(bank_signal_record("TEXT", 1, "raw_text", banked)[0], None)])
    assert view.search("raw_text", [edited], 0) == [[]]


def test_an_installed_extension_adds_its_signal_type_to_banks_and_search(monkeypatch):
    """tests/signal_extension.py: a type the project does not know, matched by python-threatexchange's own index."""
    monkeypatch.setattr(SIGNAL_TYPES, "_plugins", dict(SIGNAL_TYPES))  # this test's additions stay in this test
    assert SIGNAL_TYPES.add_extension("tests.signal_extension") == ["word_set"]
    plugin = SIGNAL_TYPES["word_set"]
    assert type(plugin) is SignalPlugin and plugin.content_types == {"text"}
    value = hash_content("text", b"The quick brown fox jumps over the lazy dog")["word_set"].value
    with pytest.raises(InvalidSignal):
        plugin.validate("Not Sorted")
    view = BankView()
    view.apply_bank("WORDS", {"name": "WORDS"})
    view.apply_signals([bank_signal_record("WORDS", 7, "word_set", value)])
    query = hash_content("text", b"the quick brown fox jumps over the lazy cat")["word_set"].value
    [[hit], []] = view.search("word_set", [query, "nothing similar"], 0)
    assert hit.entry.bank_content_id == 7 and hit.distance == 0


# -- vPDQ -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory, request) -> dict[str, str]:
    """vPDQ values of the shipped video, its edited copies and unrelated videos, by name."""
    pytest.importorskip("vpdq", reason="vpdq is installed by make setup (needs FFmpeg dev packages)")
    tmp = tmp_path_factory.mktemp("videos")
    original = SHIPPED_MEDIA.path(VIDEO)
    files = {"original": original}
    files |= {name: ffmpeg(["-i", str(original), *args], tmp / f"{name}.mp4") for name, args in EDITS.items()}
    files |= {name: ffmpeg(args, tmp / f"{name}.mp4") for name, args in UNRELATED.items()}
    return {name: hash_content("video", path.read_bytes())["vpdq"].value for name, path in files.items()}


def our_distances(values: dict[str, str]) -> dict[tuple[str, str], int]:
    """(query, banked) -> the distance our vPDQ index gives the pair, for every pair it finds."""
    names = sorted(values)
    index = SIGNAL_TYPES["vpdq"].new_index()
    index.add(list(range(len(names))), [values[n] for n in names])
    found = index.search([values[n] for n in names], max(FRAME_DISTANCES))
    return {(query, names[row]): d for query, hits in zip(names, found) for row, d in hits}


def check_same_decisions(values: dict[str, str]) -> list[tuple[str, str]]:
    """Every ordered pair at every frame distance: ours as python-threatexchange's. The pairs that match at 31."""
    ours = our_distances(values)
    matched = []
    for query, banked in itertools.product(sorted(values), repeat=2):
        for d in FRAME_DISTANCES:
            theirs = vpdq_decision(values[query], values[banked], d)
            assert (ours.get((query, banked), d + 1) <= d) == theirs, (query, banked, d, ours.get((query, banked)))
        if ours.get((query, banked), 99) <= 31:
            matched.append((query, banked))
    return matched


def test_vpdq_decisions_on_edited_copies_are_python_threatexchanges(videos):
    matched = check_same_decisions(videos)
    for edit in ("reencoded", "trimmed", "resized"):
        assert (edit, "original") in matched, edit  # the copies an uploader makes are found
    assert ("trimmed", "original") in matched and ("original", "trimmed") not in matched  # 80% of the query's frames
    for a, b in matched:
        assert (a in UNRELATED) == (b in UNRELATED) and (a == b or a not in UNRELATED), (a, b)


def same_as_vpdq_index(values: dict[str, str]) -> None:
    """At the default frame distance, python-threatexchange's own (faiss) VPDQIndex finds what ours finds."""
    from threatexchange.extensions.vpdq.vpdq_index import VPDQIndex

    names = sorted(values)
    theirs = VPDQIndex.build([(values[n], n) for n in names])
    ours = our_distances(values)
    for query in names:
        found = {m.metadata for m in theirs.query(values[query])}
        assert found == {b for (q, b), d in ours.items() if q == query and d <= 31}, query
        assert query in found


def test_vpdq_index_agrees_with_python_threatexchanges_vpdq_index(videos):
    same_as_vpdq_index(videos)


@pytest.mark.parametrize("media_name", ["reference"])
def test_vpdq_decisions_on_the_reference_videos_are_python_threatexchanges(media_name):
    """The reference videos are long (every frame is hashed): their decisions are checked against
    python-threatexchange's VPDQIndex, which decides as its brute-force matcher at distance 31."""
    pytest.importorskip("vpdq", reason="vpdq is installed by make setup (needs FFmpeg dev packages)")
    media = media_set(media_name)
    same_as_vpdq_index({video.stem: hash_content("video", video.read_bytes())["vpdq"].value
                        for video, _ in media.videos()})


def test_the_vpdq_index_is_rebuilt_from_its_export(videos):
    """A bank view snapshot keeps the videos' values; the frames are indexed again from them."""
    plugin = SIGNAL_TYPES["vpdq"]
    index = plugin.new_index()
    index.add([3, 5], [videos["original"], videos["testsrc"]])
    index.remove([5])
    restored = plugin.new_index(index.export())
    assert len(restored) == 1 and restored.values([3]) == [videos["original"]]
    queries = [videos["reencoded"], videos["testsrc"]]
    assert restored.search(queries, 31) == index.search(queries, 31) and restored.search(queries, 31)[0]


def test_vpdq_values_of_the_earlier_form_still_validate():
    plugin = SIGNAL_TYPES["vpdq"]
    earlier = "0,100,dadb999c25266273529cadac8dcb52c22324ad3bce99726c38668d93c799f06c,0.000\n" \
              "1,90,dadb999c25266273529cadac8dcb52c22324ad3bce99726c38668d93c799f06d,0.033"
    value = plugin.validate(earlier)
    assert value.startswith("[") and plugin.compare(value, value).match
