"""The `make run` demo: a sample bank, uploads that match it and uploads that do not, actions shown.

Sample photos are generated (pipeline.hashing.samples), so the demo needs no data files.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline import topics as T
from pipeline.banks import bank_record, bank_signal_record
from pipeline.client import Client
from pipeline.config import Settings
from pipeline.hashing import hash_content
from pipeline.services.content_ids import claim_content_ids
from pipeline.signal_types import content_type_of, default_signal_type
from pipeline.state.log_reader import read_latest
from pipeline.uploads import new_upload

log = logging.getLogger(__name__)
DEMO_BANK = "SAMPLE_BANK"
DEMO_EXCHANGE = "SAMPLE_EXCHANGE"


def seed_bank(settings: Settings, originals: list[Path]) -> None:
    """Create the sample bank and bank the original photos, unless an earlier run did."""
    client = Client(settings)
    if not any(key.startswith(f"{DEMO_BANK}/") for key in read_latest(settings, T.BANK_SIGNALS)):
        client.produce(T.BANKS, DEMO_BANK, bank_record(DEMO_BANK, action="remove"))
        for path, content_id in zip(originals, claim_content_ids(settings, DEMO_BANK, len(originals))):
            signals = hash_content("photo", path.read_bytes())
            for kind, sv in signals.items():
                key, record = bank_signal_record(DEMO_BANK, content_id, kind, sv.value, {"file": path.name})
                client.produce(T.BANK_SIGNALS, key, record)
        client.flush()
        print(f"banked {len(originals)} sample photos in {DEMO_BANK}", flush=True)


def fetch_sample_exchange(settings: Settings) -> list[tuple[str, str]]:
    """Configure python-threatexchange's sample exchange (unless an earlier run did), have the
    fetcher fetch it into its bank, and return its photo hashes (signal type, value)."""
    from connectors.exchanges import sample_signals
    from connectors.exchanges.config import exchange_record
    from connectors.exchanges.control import configure, request_fetch, wait_for_fetch

    record = read_latest(settings, T.EXCHANGES).get(DEMO_EXCHANGE)
    if record is None:
        record = exchange_record(DEMO_EXCHANGE, "sample")
        configure(settings, record)
    status = wait_for_fetch(settings, DEMO_EXCHANGE, request_fetch(settings, record), timeout_s=120)
    if status is None or not status["last_fetch_succeeded"]:
        print(f"the fetcher did not fetch exchange {DEMO_EXCHANGE}: {status and status['last_error']}", flush=True)
        return []
    print(f"fetched exchange {DEMO_EXCHANGE} (python-threatexchange's sample) into bank {DEMO_EXCHANGE}: "
          f"{status['fetched_items']} records at {status['records_per_s']:.0f}/s", flush=True)
    return [(kind, value) for kind, value in sample_signals() if kind == default_signal_type()]


def run_demo(settings: Settings, sample_dir: Path) -> None:
    from pipeline.hashing.samples import generate_demo_images

    samples = generate_demo_images(sample_dir)
    seed_bank(settings, samples["originals"])
    run_id = time.strftime("%H%M%S")
    uploads = [(f"demo-{run_id}-edit-{p.stem}", p) for p in samples["edits"]]
    uploads += [(f"demo-{run_id}-other-{p.stem}", p) for p in samples["unrelated"]]
    exchanged = fetch_sample_exchange(settings)[:1]
    client = Client(settings)
    for content_id, path in uploads:
        client.produce(T.UPLOADS, content_id, new_upload(content_id, "photo", content=path.read_bytes()))
    signal_ids = [f"demo-{run_id}-exchange-{kind}-{i}" for i, (kind, _) in enumerate(exchanged)]
    for content_id, (kind, value) in zip(signal_ids, exchanged):
        client.produce(T.UPLOADS, content_id, new_upload(content_id, content_type_of([kind]), signals={kind: value}))
    client.flush()
    print(f"submitted {len(uploads) + len(signal_ids)} uploads: {len(samples['edits'])} edited copies of banked "
          f"photos, {len(samples['unrelated'])} unrelated photos, {len(signal_ids)} hash from the exchange; "
          "waiting for results (Ctrl-C stops everything)", flush=True)
    show_results(settings, {cid for cid, _ in uploads} | set(signal_ids))


def show_results(settings: Settings, content_ids: set[str]) -> None:
    """Print each upload's match result and its actions as they arrive, then keep following actions."""
    pending = set(content_ids)
    client = Client(settings)
    for key, record in client.read(T.MATCHES, idle_timeout_s=None):
        if key not in pending:
            continue
        pending.discard(key)
        effective = [h for h in record["matches"] if h["status"] == "match"]
        if effective:
            hit = effective[0]
            source = f" (from exchange {hit['exchange']['exchange']})" if hit.get("exchange") else ""
            print(f"MATCH   {key}: bank {hit['bank']} content {hit['bank_content_id']} at PDQ distance "
                  f"{hit['distance']}{source}", flush=True)
        else:
            print(f"no match {key}", flush=True)
        if not pending:
            break
    print("actions on hma.actions (new ones appear as they arrive):", flush=True)
    for key, action in client.read(T.ACTIONS, idle_timeout_s=None):
        banks = sorted({h["bank"] for h in action["matches"]})
        print(f"ACTION  {action['action']:<8} {key} (banks: {', '.join(banks)})", flush=True)
