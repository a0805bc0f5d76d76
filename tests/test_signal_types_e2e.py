"""Every kind of signal end to end: upload events into hma.uploads, match records out of hma.matches
(the worker and the API on the real broker). Videos by vPDQ (with the guard and the ring), text by
raw_text, URLs by url / url_md5, files by SHA-256, and a signal type from an installed extension
that the project does not know (tests/signal_extension.py)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
import requests

from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    EDITS, SHIPPED_MEDIA, UNRELATED, VIDEO, PipelineStack, checked, collect_until, ffmpeg, hmas, pipeline_env,
    vpdq_decision, wait_until,
)
from tests.signal_extension import WordSetSignal

pytestmark = pytest.mark.kafka
TOKEN = "signals-token"
EXTENSION = "tests.signal_extension"


class Stack(PipelineStack):
    def bank(self, name, **config):
        self.call("POST", "/c/banks", 201, json={"name": name, **config})

    def bank_video(self, bank, path):
        """Bank a video through the API, which hashes every frame first: longer than other calls."""
        return checked(requests.post(f"{self.api.base}/c/bank/{bank}/content", headers={"Authorization": f"Bearer {TOKEN}"},
                                     files={"file": (path.name, path.read_bytes())}, timeout=300))

    def submit(self, uploads):
        client = Client(self.settings)
        for upload in uploads:
            client.produce(T.UPLOADS, upload["content_id"], upload)
        client.flush()

    def wait_for_worker(self, banks, probe):
        """Submit probe uploads (`probe(content_id)`) until one matches every bank named: the API
        wrote the banks' signals, and the worker reads them on its own, a moment later."""
        def caught_up():
            cid = f"probe-{uuid.uuid4().hex[:8]}"
            self.submit([probe(cid)])
            return set(banks) <= {h["bank"] for h in self.matched(cid)[cid]["matches"]}
        wait_until(caught_up, 180, f"the worker to read the signals of {', '.join(banks)}", interval_s=1)

    def matched(self, *content_ids):
        """Each upload's one match record."""
        found = collect_until(self.settings, T.MATCHES, set(content_ids), timeout_s=180)
        assert set(content_ids) <= set(found), set(content_ids) - set(found)
        return {cid: found[cid][-1] for cid in content_ids}


@pytest.fixture(scope="module")
def stack(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("signals")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN, HMAS_SIGNAL_EXTENSIONS=EXTENSION)
    hmas(env, "topics", "create")
    s = Stack(env, tmp, TOKEN)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """The shipped video, its edited copies and an unrelated video, by name."""
    pytest.importorskip("vpdq", reason="vpdq is installed by make setup (needs FFmpeg dev packages)")
    tmp = tmp_path_factory.mktemp("videos")
    original = SHIPPED_MEDIA.path(VIDEO)
    files = {"original": original}
    files |= {name: ffmpeg(["-i", str(original), *EDITS[name]], tmp / f"{name}.mp4") for name in ("reencoded", "resized")}
    files["unrelated"] = ffmpeg(UNRELATED["testsrc"], tmp / "unrelated.mp4")
    return files


def hits(record, kind):
    return {(h["bank"], h["status"]): h for h in record["matches"] if h["signal_type"] == kind}


def test_videos_match_by_vpdq_with_the_guard(stack, videos):
    stack.bank("VIDEOS", action="remove")
    stack.bank("STRICT", distances={"vpdq": 0})
    stack.bank("SAFE", action="none")
    stack.bank("GUARDED", suppressed_by=["SAFE"])
    stack.bank("FLOODED", flood={"max_matches": 1, "window_ms": 3_600_000})
    banked = {}
    for bank in ("VIDEOS", "STRICT", "SAFE", "GUARDED"):
        banked = stack.bank_video(bank, videos["original"])
    assert set(banked["signals"]) >= {"vpdq", "video_md5", "video_sha256"}
    # Floods are counted per signal, in every bank that holds it: the flooded bank holds another
    # video (the re-encoded copy), so that its quarantine leaves the other banks' signal alone.
    flooded_signals = stack.bank_video("FLOODED", videos["reencoded"])["signals"]
    for banks, signals in ((("VIDEOS", "STRICT", "SAFE", "GUARDED"), banked["signals"]), (("FLOODED",), flooded_signals)):
        md5 = {"video_md5": signals["video_md5"]}  # the probes hit the MD5 signal, not the vPDQ one
        stack.wait_for_worker(banks, lambda cid, md5=md5: new_upload(cid, "video", signals=md5))
    data = {name: path.read_bytes() for name, path in videos.items()}
    stack.submit([new_upload(f"v-{name}", "video", content=content) for name, content in data.items()])
    records = stack.matched(*(f"v-{name}" for name in data))

    vpdq = {name: records[f"v-{name}"]["signals"]["vpdq"]["value"] for name in data}
    original = vpdq["original"]
    for name in ("original", "reencoded", "resized"):
        found = hits(records[f"v-{name}"], "vpdq")
        assert vpdq_decision(vpdq[name], original, 31), name  # python-threatexchange calls these copies matches
        assert ("VIDEOS", "match") in found, (name, records[f"v-{name}"]["matches"], records[f"v-{name}"]["skipped"])
        distance = found[("VIDEOS", "match")]["distance"]
        assert 0 <= distance <= 31 and vpdq_decision(vpdq[name], original, distance), name
        assert (("STRICT", "match") in found) == vpdq_decision(vpdq[name], original, 0), name  # its own distance
        assert ("GUARDED", "suppressed") in found and ("SAFE", "match") in found, name  # the negative bank
    assert hits(records["v-unrelated"], "vpdq") == {} and not vpdq_decision(vpdq["unrelated"], original, 31)
    flooding = [name for name in data if vpdq_decision(vpdq[name], flooded_signals["vpdq"], 31)]
    flooded = [h["status"] for name in data
               for h in records[f"v-{name}"]["matches"] if h["bank"] == "FLOODED" and h["signal_type"] == "vpdq"]
    assert len(flooding) >= 2 and sorted(flooded) == ["match"] + ["quarantined"] * (len(flooding) - 1)  # a limit of one
    # the exact copy also matches by the file's MD5 and SHA-256; the edited ones do not
    exact = records["v-original"]
    assert ("VIDEOS", "match") in hits(exact, "video_sha256") and ("VIDEOS", "match") in hits(exact, "video_md5")
    assert ("VIDEOS", "match") not in hits(records["v-reencoded"], "video_sha256")
    actions = collect_until(stack.settings, T.ACTIONS, {"v-reencoded"})
    assert "remove" in {a["action"] for a in actions["v-reencoded"]}

    looked_up = checked(requests.post(f"{stack.api.base}/m/lookup", files={"file": ("r.mp4", data["resized"])}, timeout=300))
    assert "VIDEOS" in looked_up["vpdq"] and "GUARDED" not in looked_up["vpdq"]
    sha = hashlib.sha256(data["original"]).hexdigest()
    assert "VIDEOS" in stack.call("GET", "/m/lookup", params={"signal_type": "video_sha256", "signal": sha})


def test_a_newly_banked_video_matches_recent_uploads_through_the_ring(stack, videos):
    """Retroactive matching: the ring keeps recent videos' frames, as it keeps photos' hashes."""
    stack.bank("LATE")
    stack.submit([new_upload("v-before-banking", "video", content=videos["resized"].read_bytes())])
    stack.matched("v-before-banking")
    stack.bank_video("LATE", videos["original"])
    found = collect_until(stack.settings, T.RETRO_MATCHES, {"v-before-banking"}, timeout_s=120)
    [retro] = found["v-before-banking"]
    assert retro["retroactive"] and {(h["bank"], h["signal_type"]) for h in retro["matches"]} == {("LATE", "vpdq")}


def test_text_and_urls_match_end_to_end(stack):
    banked_text = "We the People of the United States, in Order to form a more perfect Union, establish Justice"
    stack.bank("TEXTS")
    stack.bank("URLS")
    stack.call("POST", "/c/bank/TEXTS/signal", json={"raw_text": banked_text})
    stack.call("POST", "/c/bank/URLS/signal", json={"url": "https://bad.example/the/page"})
    md5 = stack.call("GET", "/h/hash", params={"url": "https://worse.example/other", "content_type": "url"})["url_md5"]
    stack.call("POST", "/c/bank/URLS/signal", json={"url_md5": md5})
    stack.wait_for_worker(("TEXTS",), lambda cid: new_upload(cid, "text", signals={"raw_text": banked_text}))
    stack.wait_for_worker(("URLS",), lambda cid: new_upload(cid, "url", signals={"url_md5": md5}))
    edited = banked_text.replace("People", "Peeple").replace("Justice", "justice")
    stack.submit([
        new_upload("t-edited", "text", content=edited.encode()),
        new_upload("t-other", "text", content=b"Nothing like any banked text at all, not even close."),
        new_upload("u-banked", "url", url="https://bad.example/the/page"),
        new_upload("u-md5", "url", url="https://worse.example/other"),
        new_upload("u-other", "url", url="https://fine.example/"),
    ])
    records = stack.matched("t-edited", "t-other", "u-banked", "u-md5", "u-other")
    assert ("TEXTS", "match") in hits(records["t-edited"], "raw_text")
    assert records["t-edited"]["content_type"] == "text" and records["t-other"]["matches"] == []
    assert ("URLS", "match") in hits(records["u-banked"], "url") and hits(records["u-banked"], "url_md5") == {}
    assert ("URLS", "match") in hits(records["u-md5"], "url_md5") and records["u-other"]["matches"] == []

    assert "TEXTS" in stack.call("GET", "/m/lookup", params={"signal_type": "raw_text", "signal": edited})
    by_url = stack.call("GET", "/m/lookup", params={"url": "https://bad.example/the/page", "content_type": "url"})
    assert "URLS" in by_url["url"] and by_url["url_md5"] == {}
    assert {"name": "text", "enabled": True} in stack.call("GET", "/c/content_type")


def test_a_signal_type_from_an_installed_extension_is_banked_looked_up_and_matched(stack):
    assert any(t["name"] == "word_set" for t in stack.call("GET", "/c/signal_type"))
    stack.bank("WORDS")
    banked = WordSetSignal.hash_from_str("the quick brown fox jumps over the lazy dog")
    stack.call("POST", "/c/bank/WORDS/signal", json={"word_set": banked})
    query = WordSetSignal.hash_from_str("The quick brown fox jumps over the lazy DOG!")
    assert "WORDS" in stack.call("GET", "/m/lookup", params={"signal_type": "word_set", "signal": query})
    stack.wait_for_worker(("WORDS",), lambda cid: new_upload(cid, "text", content=b"the quick brown fox jumps over the lazy dog"))
    stack.submit([new_upload("w-near", "text", content=b"the quick brown fox jumps over the lazy cat"),
                  new_upload("w-far", "text", content=b"an entirely different sentence")])
    records = stack.matched("w-near", "w-far")
    assert ("WORDS", "match") in hits(records["w-near"], "word_set") and hits(records["w-far"], "word_set") == {}
