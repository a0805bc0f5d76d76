"""What feedback decisions do to bank signals: copy to the confirmed bank, tag, or disable."""

import time

from pipeline.agents.feedback import signal_changes
from tests.pipeline_env import conformed_bank, random_pdq, view_with


def test_confirm_copies_into_the_confirmed_bank():
    code = random_pdq()
    view = view_with((conformed_bank("EXCHANGE", confirmed_bank="CONFIRMED"), [code]), (conformed_bank("CONFIRMED"), []))
    [entry] = view.entries("EXCHANGE")
    [(key, record)] = signal_changes(view, {"content_id": "c", "verdict": "harmful", "signals": [entry.signal_id]})
    assert key.startswith("CONFIRMED/pdq/") and record["bank"] == "CONFIRMED" and record["value"] == code
    assert record["bank_content_id"] is None  # a new content item: the agent claims its id
    assert record["metadata"]["confirmed_from"] == "EXCHANGE/1"


def test_confirm_without_a_confirmed_bank_tags_in_place():
    view = view_with((conformed_bank("EXCHANGE"), [random_pdq()]))
    [entry] = view.entries("EXCHANGE")
    [(key, record)] = signal_changes(view, {"content_id": "c", "verdict": "harmful", "signals": [entry.signal_id]})
    assert key == entry.key and record["metadata"]["confirmed"] == "true"


def test_deconfirm_disables_for_good_or_for_the_banks_period():
    code = random_pdq()
    view = view_with((conformed_bank("FOREVER"), [code]), (conformed_bank("BRIEF", deconfirm_disable_s=3600), [code]))
    sid = next(iter(view.entries("FOREVER"))).signal_id
    changes = dict((r["bank"], r) for _, r in signal_changes(view, {"content_id": "c", "verdict": "benign", "signals": [sid]}))
    assert changes["FOREVER"]["disable_until_ts"] == 0
    assert abs(changes["BRIEF"]["disable_until_ts"] - (time.time() + 3600)) < 60
