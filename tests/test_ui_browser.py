"""The /ui pages in a real browser: headless Chromium (Debian's package) driven by Playwright, over
an API process on the real broker. Each test fills forms, submits them and reads what a person
sees; every page is saved as a screenshot, under the folder HMAS_UI_SCREENSHOTS names (the README's
pictures come from `HMAS_UI_SCREENSHOTS=docs/ui make test`), or the test's own temporary folder."""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from ops.kafka.broker import free_port
from pipeline import topics as T
from pipeline.client import Client
from pipeline.uploads import new_upload
from tests.pipeline_env import (
    BRIDGE, REPO, ApiProcess, HmasProcess, WorkerProcess, collect_until, create_topics, flip, pipeline_env,
    settings_from, wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (`make system-deps` installs it)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (`pip install -e .[dev]`)")
expect = sync_api.expect
TOKEN = "ui-token"
READ_TOKEN = "ui-read-token"
MEDIA_HOST = "127.0.0.2"  # allow-listed for the media server; 127.0.0.1 stays refused


def random_pdq(seed: int) -> str:
    return np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


@pytest.fixture(scope="module")
def env(kafka_broker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    env = pipeline_env(kafka_broker.bootstrap, tmp / "state", HMAS_API_TOKEN=TOKEN, HMAS_FLOOD_BUCKET_MS="10000",
                       HMAS_FETCH_ALLOW_HOSTS=MEDIA_HOST, HMAS_FETCH_MAX_BYTES="2000000")
    create_topics(env)
    worker = WorkerProcess(env, tmp / "worker.log").start()
    yield {**env, "tmp": str(tmp)}
    worker.stop()


@pytest.fixture(scope="module")
def api(env):
    process = ApiProcess({k: v for k, v in env.items() if k != "tmp"}, Path(env["tmp"]) / "api.log", free_port()).start()
    yield process
    process.stop()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media_url():
    """The shipped bridge photos over HTTP, for uploads and bank additions by URL."""
    server = http.server.ThreadingHTTPServer((MEDIA_HOST, 0), functools.partial(QuietFiles, directory=str(BRIDGE)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{MEDIA_HOST}:{server.server_address[1]}"
    server.shutdown()


def settings_of(env):
    return settings_from({k: v for k, v in env.items() if k != "tmp"})


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def closed_api(env):
    """A second API on the same topics with reads closed (HMAS_API_OPEN_READS=0) and a read token."""
    closed = {k: v for k, v in env.items() if k != "tmp"} | {"HMAS_API_OPEN_READS": "0",
                                                             "HMAS_API_TOKENS": f"{READ_TOKEN}:read"}
    process = ApiProcess(closed, Path(env["tmp"]) / "closed-api.log", free_port()).start()
    yield process
    process.stop()


def browser_page(browser, base: str, shots: Path):
    """A page in a fresh browser context (no cookies) on the API at `base`."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, base_url=base)
    opened = context.new_page()
    opened.shots = shots  # where shoot() saves this page's screenshots
    return context, opened


@pytest.fixture
def page(browser, api, shots):
    context, opened = browser_page(browser, api.base, shots)
    yield opened
    context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: a run does not rewrite the README's pictures unless asked to."""
    chosen = os.environ.get("HMAS_UI_SCREENSHOTS")
    folder = (REPO / chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page, name: str) -> None:
    """A screenshot of the whole page, in 128 colours so that the README's pictures stay small."""
    path = page.shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=128)
    small.save(path, optimize=True)


def sign_in(page, token: str = TOKEN) -> None:
    page.goto("/ui/login?next=/ui/banks")
    page.fill("input[name=token]", token)
    page.click("main button:has-text('Sign in')")
    expect(page).to_have_url(re.compile(r"/ui/banks$"))


def create_bank(page, name: str, pdq_distance: int | None = None, action: str = "review") -> None:
    page.goto("/ui/banks")
    page.fill("input[name=name]", name)
    page.fill("input[name=action]", action)
    if pdq_distance is not None:
        page.fill("input[name=pdq_distance]", str(pdq_distance))
    page.click("button:has-text('Create')")
    expect(page.get_by_role("status")).to_have_text("Bank created.")


def add_hash(page, bank: str, pdq: str) -> int:
    """The new content's id, as the page reports it."""
    page.goto(f"/ui/bank/{bank}")
    page.fill("form[action$='/content'] input[name=signal]", pdq)
    page.click("button:has-text('Add')")
    status = page.get_by_role("status")
    expect(status).to_have_text(re.compile(r"^Added content \d+\.$"))
    return int(re.search(r"\d+", status.inner_text()).group())


def explain(page, pdq: str) -> None:
    page.goto("/ui/match")
    page.fill("input[name=signal]", pdq)
    page.click("button:has-text('Explain')")


def bank_row(page, bank: str):
    return page.locator(f"section[data-bank='{bank}'] tbody tr").first


def test_changes_need_the_token_and_a_bank_is_created_and_filled(page):
    page.goto("/ui/banks")
    page.fill("input[name=name]", "NOT_YET")
    page.click("button:has-text('Create')")
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.fill("input[name=token]", "wrong")
    page.click("main button:has-text('Sign in')")
    expect(page.get_by_role("alert")).to_have_text("That is not an API token.")
    shoot(page, "login")
    sign_in(page)
    create_bank(page, "NARROW", pdq_distance=10)
    add_hash(page, "NARROW", random_pdq(1))
    expect(page.locator("#contents")).to_contain_text(random_pdq(1))
    shoot(page, "bank")


def test_with_reads_closed_a_page_needs_a_sign_in_and_a_read_token_changes_nothing(browser, closed_api, shots):
    context, page = browser_page(browser, closed_api.base, shots)
    try:
        for path in ("/ui", "/ui/banks", "/ui/match", "/ui/compare", "/ui/quarantine", "/ui/recent", "/ui/rerun",
                     "/ui/exchanges", "/ui/feed"):
            page.goto(path)
            expect(page).to_have_url(re.compile(r"/ui/login\?next="))
            expect(page.locator("input[name=token]")).to_be_visible()
        sign_in(page, READ_TOKEN)
        expect(page.locator("header .who")).to_contain_text("role read")
        expect(page.locator("#banks")).to_be_visible()
        page.goto("/ui/match")
        expect(page.locator("input[name=signal]")).to_be_visible()
        page.goto("/ui/banks")
        page.fill("input[name=name]", "BY_READER")
        page.click("button:has-text('Create')")
        expect(page.get_by_role("alert")).to_have_text(
            "this needs a sign-in with a token of role curate or above; this session's role is read")
        shoot(page, "read-only")
        assert "BY_READER" not in requests.get(closed_api.base + "/c/banks", timeout=30,
                                               headers={"Authorization": f"Bearer {READ_TOKEN}"}).text
    finally:
        context.close()


def test_the_match_lab_says_a_hash_just_past_the_threshold_is_too_far(page):
    base = random_pdq(1)
    explain(page, flip(base, 11))
    row = bank_row(page, "NARROW")
    expect(row.locator(".verdict")).to_have_text("too far")
    expect(row).to_contain_text("too far: distance 11 > threshold 10")
    expect(page.locator("#summary")).to_contain_text("No bank matches")
    explain(page, flip(base, 10))
    expect(bank_row(page, "NARROW").locator(".verdict")).to_have_text("match")


def test_the_match_lab_names_the_negative_bank_entry_that_suppresses_a_hit(page):
    pdq = random_pdq(2)
    sign_in(page)
    create_bank(page, "BENIGN", action="none")
    create_bank(page, "FEED")
    page.fill("input[name=suppressed_by]", "BENIGN")
    page.fill("input[name=flood_max]", "500")
    page.fill("input[name=flood_window]", "10m")
    page.click("button:has-text('Save controls')")
    expect(page.get_by_role("status")).to_have_text("Controls saved.")
    expect(page.locator("input[name=suppressed_by]")).to_have_value("BENIGN")
    benign_id = add_hash(page, "BENIGN", pdq)
    add_hash(page, "FEED", pdq)
    explain(page, pdq)
    row = bank_row(page, "FEED")
    expect(row.locator(".verdict")).to_have_text("suppressed")
    expect(row).to_contain_text(f"also matches negative bank BENIGN: content {benign_id},")
    shoot(page, "match")
    page.goto("/ui/banks")
    expect(page.locator("#banks")).to_contain_text("500 / 10m")
    shoot(page, "banks")


def test_compare_draws_the_bits_that_differ(page):
    base = random_pdq(3)
    page.goto("/ui/compare")
    page.fill("input[name=left]", base)
    page.fill("input[name=right]", flip(base, 11))
    page.click("button:has-text('Compare')")
    expect(page.locator("#distance-pdq")).to_contain_text("pdq distance 11 of 256 bits")
    expect(page.locator("svg.bits rect.bit-differs")).to_have_count(11)
    shoot(page, "compare")


def test_compare_two_files(page, tmp_path):
    pixels = np.random.default_rng(8).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    paths = []
    for name, image in (("a.png", pixels), ("b.png", 255 - pixels)):
        paths.append(tmp_path / name)
        Image.fromarray(image).save(paths[-1])
    page.goto("/ui/compare")
    page.set_input_files("input[name=left_file]", str(paths[0]))
    page.set_input_files("input[name=right_file]", str(paths[1]))
    page.click("button:has-text('Compare files')")
    expect(page.locator("#distance-pdq")).to_contain_text("pdq distance")
    differing = int(re.search(r"distance (\d+)", page.locator("#distance-pdq").inner_text()).group(1))
    expect(page.locator("svg.bits rect.bit-differs")).to_have_count(differing)


def test_bad_input_gets_a_message_on_the_page(page, tmp_path):
    explain(page, "not-a-hash")
    expect(page.get_by_role("alert")).to_contain_text("invalid signal")
    page.goto("/ui/match")
    page.fill("input[name=url]", f"http://127.0.0.1:{free_port()}/nothing.jpg")
    page.click("button:has-text('Explain')")
    expect(page.get_by_role("alert")).to_contain_text("Failed to fetch URL")
    not_an_image = tmp_path / "photo.jpg"  # named like a photo; a text file would be hashed as text
    not_an_image.write_text("this is not an image")
    page.goto("/ui/match")
    page.set_input_files("input[name=file]", str(not_an_image))
    page.click("button:has-text('Explain file')")
    expect(page.get_by_role("alert")).to_contain_text("cannot hash")
    page.goto("/ui/compare?left=abc&right=def")
    expect(page.get_by_role("alert")).to_contain_text("A: invalid signal")
    page.goto("/ui/bank/NO_SUCH_BANK")
    expect(page.get_by_role("alert")).to_contain_text("bank 'NO_SUCH_BANK' not found")
    assert "Traceback" not in page.content()


def test_removing_content_from_the_bank_page(page):
    sign_in(page)
    create_bank(page, "SHORT_LIVED")
    content_id = add_hash(page, "SHORT_LIVED", random_pdq(4))
    page.click("#contents button:has-text('remove')")
    expect(page.get_by_role("status")).to_have_text(f"Removed content {content_id}.")
    expect(page.locator("main")).to_contain_text("no content yet")


def test_home_shows_the_index_and_dead_letters_by_reason(page, env):
    page.goto("/ui")
    expect(page.locator("main table").first).to_contain_text("pdq")
    expect(page.locator("main")).to_contain_text("no dead letters")
    settings = settings_of(env)
    client = Client(settings)
    client.produce_raw(T.UPLOADS, "bad-pdq", b'{"content_id": "bad-pdq", "content_type": "photo", "signals": {"pdq": "12345"}}')
    client.flush()
    client.close()
    collect_until(settings, T.DEAD_LETTERS, {"bad-pdq"})
    page.goto("/ui")
    letters = page.locator("main table").last
    expect(letters).to_contain_text("64 hex characters")
    expect(letters).to_contain_text("hasher")
    shoot(page, "home")


def test_the_match_lab_shows_a_quarantined_signal_and_a_past_upload(page, env, api):
    pdq = random_pdq(5)
    sign_in(page)
    create_bank(page, "FLOODED")
    page.fill("input[name=flood_max]", "2")
    page.fill("input[name=flood_window]", "10m")
    page.click("button:has-text('Save controls')")
    expect(page.get_by_role("status")).to_have_text("Controls saved.")
    add_hash(page, "FLOODED", pdq)
    settings = settings_of(env)
    client = Client(settings)
    ids = [f"flood-{i}" for i in range(4)]
    for cid in ids:
        client.produce(T.UPLOADS, cid, new_upload(cid, "photo", signals={"pdq": pdq}))
    client.flush()
    client.close()
    explain(page, pdq)
    row = bank_row(page, "FLOODED")
    assert reload_until(page, row.locator(".verdict"), "quarantined"), "no quarantine reached the API's view"
    expect(row).to_contain_text("quarantined since")
    expect(row).to_contain_text("matches within 600s")
    page.goto("/ui/match")
    page.fill("input[name=content_id]", ids[-1])
    page.click("button:has-text('Explain')")
    assert reload_until(page, page.locator("main table").first, pdq), "the upload never reached the API's ring"
    expect(bank_row(page, "FLOODED").locator(".verdict")).to_have_text("quarantined")


def reload_until(page, locator, text: str, attempts: int = 240) -> bool:
    """Reload until the locator shows the text: what the worker writes reaches the API on its own
    (every 250 ms, for a minute at most)."""
    for _ in range(attempts):
        if locator.count() and text in (locator.first.text_content() or ""):
            return True
        page.wait_for_timeout(250)
        page.reload()
    return False


def test_a_change_without_the_form_csrf_token_is_refused(api):
    session = requests.Session()
    session.get(api.base + "/ui/login")
    csrf = session.cookies["hmas_csrf"]
    r = session.post(api.base + "/ui/login", data={"token": TOKEN, "csrf": csrf, "next": "/ui"}, allow_redirects=False)
    assert r.status_code == 303 and "hmas_session" in session.cookies
    r = session.post(api.base + "/ui/banks", data={"name": "FORGED", "csrf": "guessed"})
    assert r.status_code == 403 and "this form has expired" in r.text
    assert "FORGED" not in requests.get(api.base + "/c/banks", timeout=30).text


def upload(env, content_id: str, **what) -> None:
    client = Client(settings_of(env))
    client.produce(T.UPLOADS, content_id, new_upload(content_id, "photo", **what))
    client.flush()
    client.close()


def set_controls(page, bank: str, **fields: str) -> None:
    page.goto(f"/ui/bank/{bank}")
    for name, value in fields.items():
        page.fill(f"input[name={name}]", value)
    page.click("button:has-text('Save controls')")
    expect(page.get_by_role("status")).to_have_text("Controls saved.")


def test_the_quarantine_queue_shows_thumbnails_and_takes_decisions(page, env, media_url, browser, api):
    sign_in(page)
    create_bank(page, "REVIEWED")
    set_controls(page, "REVIEWED", flood_max="2", flood_window="10m")
    page.goto("/ui/bank/REVIEWED")
    page.set_input_files("form[action$='/content'] input[name=file]", str(BRIDGE / "aaa-orig.jpg"))
    page.click("button:has-text('Add')")
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Added content \d+\.$"))
    ids = [f"review-{i}" for i in range(4)]
    for cid in ids:
        upload(env, cid, url=f"{media_url}/aaa-orig.jpg")
    page.goto("/ui/quarantine")
    queue = page.locator("#queue")
    assert reload_until(page, queue, "REVIEWED"), "the flooding signal never reached the review queue"
    row = queue.locator("tbody tr", has_text="REVIEWED").first
    expect(row).to_contain_text("quarantined")
    expect(row).to_contain_text("within 10m")
    thumb = row.locator("img.thumb").first
    thumb.scroll_into_view_if_needed()
    wait_until(lambda: thumb.evaluate("img => img.complete && img.naturalWidth > 0"), 30, "a thumbnail of the upload")
    shoot(page, "quarantine")
    signal_id = row.locator("code").first.inner_text()
    sample = row.locator("figcaption a").first.inner_text()
    assert sample in ids

    anonymous = browser.new_context(base_url=api.base).new_page()  # a change needs signing in first
    anonymous.goto("/ui/quarantine")
    anonymous.locator("#queue button:has-text('release')").first.click()
    expect(anonymous).to_have_url(re.compile(r"/ui/login"))
    anonymous.context.close()

    row.locator("button:has-text('release')").click()
    expect(page.get_by_role("status")).to_have_text(f"Signal {signal_id} released: it matches again.")
    expect(page.locator("#queue tr", has_text=signal_id)).to_have_count(0)
    page.goto("/ui/quarantine?state=released")
    page.locator("#queue tr", has_text=signal_id).locator("button:has-text('confirm')").first.click()
    expect(page.get_by_role("status")).to_have_text(f"Signal {signal_id} confirmed harmful.")
    decisions = requests.get(f"{api.base}/c/feedback/{sample}", timeout=30).json()
    assert [d["verdict"] for d in decisions] == ["harmful"] and decisions[0]["signals"] == [signal_id]


def test_recent_uploads_cluster_and_a_cluster_is_banked(page, env):
    base = random_pdq(6)
    for i, bits in enumerate((0, 3, 6)):
        upload(env, f"near-{i}", signals={"pdq": flip(base, bits)})
    page.goto(f"/ui/recent?signal={base}&distance=10")
    similar = page.locator("main")
    assert reload_until(page, similar, "near-2"), "the uploads never reached the API's ring"
    for cid in ("near-0", "near-1"):
        assert reload_until(page, similar, cid), "the uploads never reached the API's ring"
    expect(page.locator("#similar tbody tr")).to_have_count(3)
    cluster = page.locator("#clusters tr", has_text="near-0")
    expect(cluster.locator("td").first).to_have_text("3")
    shoot(page, "recent")
    sign_in(page)
    create_bank(page, "CLUSTERED")
    page.goto(f"/ui/recent?signal={base}&distance=10")
    cluster = page.locator("#clusters tr", has_text="near-0")
    cluster.locator("select[name=bank]").select_option("CLUSTERED")
    cluster.locator("button:has-text('Bank this hash')").click()
    expect(page).to_have_url(re.compile(r"/ui/bank/CLUSTERED"))
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^Added content \d+\.$"))
    expect(page.locator("#contents")).to_contain_text("recent cluster of 3 uploads")


def test_a_past_upload_rerun_shows_then_now_and_what_changed(page, env):
    pdq = random_pdq(7)
    sign_in(page)
    create_bank(page, "THEN")
    add_hash(page, "THEN", flip(pdq, 8))
    settings = settings_of(env)
    upload(env, "rerun-1", signals={"pdq": pdq})
    assert collect_until(settings, T.MATCHES, {"rerun-1"}).get("rerun-1"), "the upload was never matched"
    create_bank(page, "LATER")
    later_id = add_hash(page, "LATER", pdq)
    set_controls(page, "THEN", pdq_distance="5")
    page.goto("/ui/rerun?content_id=rerun-1")
    assert reload_until(page, page.locator("main"), "What changed"), "the upload never reached the API's ring"
    expect(page.locator("#then")).to_contain_text("THEN")
    expect(page.locator("#then .verdict").first).to_have_text("match")
    expect(page.locator("#now")).to_contain_text("LATER")
    changes = page.locator("#changes")
    expect(changes).to_contain_text(f"LATER content {later_id} (pdq): no hit then, match now at distance 0")
    expect(changes).to_contain_text("threshold 31 then, 5 now")
    expect(changes).to_contain_text("match then, too far now: too far: distance 8 > threshold 5")
    shoot(page, "rerun")
    page.goto("/ui/bank/THEN")
    expect(page.locator("#chart-total")).to_have_text("1 effective match in the last hour")


@pytest.fixture
def fetcher(env):
    process = HmasProcess({k: v for k, v in env.items() if k != "tmp"}, Path(env["tmp"]) / "fetcher.log", "fetcher")
    yield process.start()
    process.stop()


def test_exchanges_are_created_from_the_schema_and_managed(page, tmp_path, fetcher):
    signals = tmp_path / "signals.txt"
    signals.write_text(f"pdq {random_pdq(9)}\npdq {random_pdq(11)}\n")
    sign_in(page)
    page.goto("/ui/exchanges")
    page.select_option("select[name=api]", "local_file")
    page.click("button:has-text('Show its fields')")
    expect(page.locator("input[name=cfg_filename]")).to_be_visible()
    page.fill("input[name=name]", "bad name")
    page.fill("input[name=cfg_filename]", str(signals))
    page.click("button:has-text('Create local_file exchange')")
    expect(page.get_by_role("alert")).to_be_visible()
    page.goto("/ui/exchanges?api=local_file")
    page.fill("input[name=name]", "LOCAL_LIST")
    page.fill("input[name=cfg_filename]", str(signals))
    page.click("button:has-text('Create local_file exchange')")
    expect(page.get_by_role("status")).to_have_text("Exchange LOCAL_LIST created, with its bank.")
    row = page.locator("#exchanges tr", has_text="LOCAL_LIST")
    row.locator("button:has-text('fetch now')").click()
    expect(page.get_by_role("status")).to_have_text("Exchange LOCAL_LIST: fetch requested.")
    assert reload_until(page, row, "succeeded"), f"the fetcher did not fetch:\n{fetcher.log_tail()}"
    expect(row).to_contain_text("2 records banked")
    row.locator("button:has-text('disable')").click()
    expect(page.get_by_role("status")).to_have_text("Exchange LOCAL_LIST: disabled.")
    expect(page.locator("#exchanges tr", has_text="LOCAL_LIST")).to_contain_text("disabled")
    shoot(page, "exchanges")


def test_the_live_feed_shows_a_match_as_it_happens(page, env):
    pdq = random_pdq(10)
    sign_in(page)
    create_bank(page, "LIVE")
    add_hash(page, "LIVE", pdq)
    page.goto("/ui/feed")
    expect(page.locator("#feed-state")).to_have_text("live")
    upload(env, "live-1", signals={"pdq": pdq})
    entry = page.locator("#feed li.fresh.feed-match", has_text="live-1")
    expect(entry.first).to_contain_text("match live-1: LIVE", timeout=90_000)
    expect(page.locator("#feed li.fresh.feed-action", has_text="live-1")).to_contain_text("review (banks LIVE)",
                                                                                       timeout=90_000)
    shoot(page, "feed")


def test_home_draws_throughput_lag_and_latency(page, env):
    page.goto("/ui")
    expect(page.locator("figure svg.chart")).to_have_count(3)
    latency = page.locator("figure", has_text="Upload-to-match latency").locator("text.legend")
    assert reload_until(page, latency, " ms"), "no upload-to-match latency was drawn"
    throughput = page.locator("figure", has_text="Throughput").locator("text.legend")
    assert reload_until(page, throughput, "/s", attempts=360), "no throughput was drawn"
    shoot(page, "home")


def test_bad_input_on_the_new_pages_gets_a_message(page, tmp_path):
    for path, message in (("/ui/recent?signal=xyz", "invalid signal"),
                          ("/ui/recent?window=soon", "window must look like"),
                          ("/ui/rerun?content_id=never-uploaded", "is not among the recent uploads"),
                          ("/ui/quarantine?state=bogus", "state must be one of")):
        page.goto(path)
        expect(page.get_by_role("alert")).to_contain_text(message)
        assert "Traceback" not in page.content()
    sign_in(page)
    create_bank(page, "STRICT")
    page.fill("form[action$='/content'] input[name=url]", f"http://127.0.0.1:{free_port()}/gone.jpg")
    page.click("button:has-text('Add')")
    expect(page.get_by_role("alert")).to_contain_text("Failed to fetch URL")
    page.fill("form[action$='/content'] input[name=signal]", "12345")
    page.click("button:has-text('Add')")
    expect(page.get_by_role("alert")).to_contain_text("invalid signal")
    not_an_image = tmp_path / "photo.jpg"  # named like a photo; a text file would be hashed as text
    not_an_image.write_text("this is not an image")
    page.set_input_files("form[action$='/content'] input[name=file]", str(not_an_image))
    page.click("button:has-text('Add')")
    expect(page.get_by_role("alert")).to_contain_text("cannot hash")
    page.fill("input[name=flood_max]", "5")
    page.fill("input[name=flood_window]", "soon")
    page.click("button:has-text('Save controls')")
    expect(page.get_by_role("alert")).to_be_visible()
    assert "Traceback" not in page.content()
