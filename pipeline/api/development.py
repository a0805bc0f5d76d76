"""Upstream HMA's /dev routes, served only with `hmas api --dev` (HMAS_API_DEV_ROUTES): a factory
reset through Kafka tombstones, random seed banks, and python-threatexchange's sample signals.
As upstream's, each redirects to the UI's home page when done.
"""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from threatexchange.signal_type.signal_base import CanGenerateRandomSignal

from pipeline import topics as T
from pipeline.api.auth import ADMIN
from pipeline.api.http import Route
from pipeline.api.state import ApiState
from pipeline.banks import bank_record, bank_signal_record
from pipeline.clock import now_ms
from pipeline.config_keys import CONTENT_ID_BASE, RESET_AT, is_signal_type_ratio_key, setting_record
from pipeline.signal_types import SIGNAL_TYPES

SEED_BANKS = 2
SEED_SIGNALS = 10_000
SAMPLE_BANK = "SEED_SAMPLE"


def to_home(note: str) -> web.Response:
    """Where upstream's /dev routes send the browser: the UI's home page (here with a note of what was done)."""
    return web.Response(status=302, headers={"Location": f"/ui?{urlencode({'note': note})}"})


def routes(state: ApiState) -> list[Route]:
    view = state.view

    async def factory_reset(request: web.Request) -> web.Response:
        """Tombstones for every bank, signal, quarantine record and setting; feedback from before
        the reset is ignored by every view; content ids start again at 1."""
        now = now_ms()
        writes = [(T.BANK_SIGNALS, e.key, None) for e in list(view.entries())]
        writes += [(T.BANKS, name, None) for name in list(view.banks)]
        writes += [(T.QUARANTINE, sid, None) for sid in list(view.quarantine)]
        writes += [(T.CONFIG, name, None) for name in list(view.settings) if is_signal_type_ratio_key(name)]
        [last_id] = await state.next_content_ids("RESET", 1)
        base = view.content_id_base + last_id  # the next claim's offset
        writes.append((T.CONFIG, CONTENT_ID_BASE, setting_record(CONTENT_ID_BASE, base, now)))
        writes.append((T.CONFIG, RESET_AT, setting_record(RESET_AT, now, now)))
        await state.write(writes)
        return to_home("Factory reset done")

    async def seed_banks(request: web.Request) -> web.Response:
        kinds = [k for k, p in SIGNAL_TYPES.items() if issubclass(p.tx, CanGenerateRandomSignal)]
        writes = []
        for b in range(SEED_BANKS):
            name = f"SEED_BANK_{b}"
            writes.append((T.BANKS, name, T.BANKS.codec.conform(bank_record(name))))
            ids = await state.next_content_ids(name, SEED_SIGNALS // SEED_BANKS)
            for i, content_id in enumerate(ids):
                kind = kinds[i % len(kinds)]
                key, record = bank_signal_record(name, content_id, kind, SIGNAL_TYPES[kind].tx.get_random_signal())
                writes.append((T.BANK_SIGNALS, key, record))
        await state.write(writes)
        return to_home(f"Seeded {SEED_BANKS} banks with {SEED_SIGNALS} random signals")

    async def setup_sample_example(request: web.Request) -> web.Response:
        from connectors.exchanges import sample_signals

        samples = sample_signals()
        writes = [(T.BANKS, SAMPLE_BANK, T.BANKS.codec.conform(bank_record(SAMPLE_BANK)))]
        for content_id, (kind, value) in zip(await state.next_content_ids(SAMPLE_BANK, len(samples)), samples):
            key, record = bank_signal_record(SAMPLE_BANK, content_id, kind, value, {"source": "threatexchange sample"})
            writes.append((T.BANK_SIGNALS, key, record))
        await state.write(writes)
        return to_home(f"Banked {len(samples)} sample signals in {SAMPLE_BANK}")

    return [
        Route("POST", "/dev/factory_reset", factory_reset, "Forget every bank, signal, feedback and quarantine record",
              "Development", writes=True, role=ADMIN),
        Route("POST", "/dev/seed_banks", seed_banks, "Two banks of random signals", "Development", writes=True,
              role=ADMIN),
        Route("POST", "/dev/setup_sample_example", setup_sample_example,
              "python-threatexchange's sample signals in a bank", "Development", writes=True, role=ADMIN),
    ]
