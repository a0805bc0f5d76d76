"""Exchange configs, credentials and the conversion of fetched records into bank signals (no broker)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from threatexchange.exchanges import fetch_state as state
from threatexchange.exchanges.impl.ncmec_api import NCMECSignalExchangeAPI
from threatexchange.exchanges.clients.ncmec.hash_api import NCMECEntryType, NCMECEntryUpdate

from connectors.exchanges.config import (
    FETCHED_SIGNAL_TYPES, InvalidExchange, collab_config, exchange_api, exchange_json, exchange_record, field_descriptors,
)
from connectors.exchanges.credentials import CredentialsUnavailable, sealed_record, unsealed, where_to_provide
from connectors.exchanges.fetcher import CheckpointWentBack, fetch_batches, redacted
from connectors.exchanges.records import BankOfExchange, keys_are_signals, record_id
from pipeline import topics as T

MD5 = "facefacefacefacefacefacefaceface"
NCMEC_API_JSON = {"environment": "https://report.cybertip.org/hashsharing", "only_esp_ids": [7]}


def ncmec_entry(entry_id: str, md5: str | None, deleted: bool = False) -> NCMECEntryUpdate:
    return NCMECEntryUpdate(id=entry_id, member_id=7, entry_type=NCMECEntryType.video, deleted=deleted,
                            classification="A1", fingerprints={"md5": md5} if md5 else {}, feedback={})


def test_config_round_trip_and_upstream_shape():
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    assert exchange_json(record) == {"name": "NCMEC", "api": "ncmec", "enabled": True, **NCMEC_API_JSON}
    assert collab_config(record).only_esp_ids == {7}
    with pytest.raises(InvalidExchange, match="not a valid"):
        exchange_record("NCMEC", "ncmec", {"environment": "https://elsewhere"})
    with pytest.raises(InvalidExchange, match="No such exchange type"):
        exchange_record("X", "nope")


def test_field_descriptors_say_type_requirement_and_choices():
    fields = {f["name"]: f for f in field_descriptors(exchange_api("ncmec").get_config_cls(), frozenset({"name", "api", "enabled"}))}
    assert fields["environment"]["type"] == "enum" and fields["environment"]["required"]
    assert "https://report.cybertip.org/hashsharing" in fields["environment"]["choices"]
    assert fields["only_esp_ids"] == {**fields["only_esp_ids"], "type": "set_of_number", "required": False, "default": []}


def test_ncmec_records_become_bank_content_items_updated_and_removed():
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    bank = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record))
    converted = {record_id(k): bank.convert(k, v) for k, v in {"e1": ncmec_entry("e1", MD5)}.items()}
    assert bank.held_before(converted) == ({}, 1)  # not held: one content id needed
    [(spec, key, value)] = bank.writes(converted, iter([41]))
    assert spec is T.BANK_SIGNALS and value["bank_content_id"] == 41 and value["value"] == MD5
    assert value["metadata"]["exchange_record"] == "e1" and value["metadata"]["exchange"] == "NCMEC"

    # the same record without a signal it converts to: its signal is removed
    gone = {"e1": bank.convert("e1", ncmec_entry("e1", None))}
    assert bank.writes(gone, iter(())) == [(T.BANK_SIGNALS, key, None)] and bank.record_ids() == []

    # loading what the bank holds, then a deletion (None)
    reloaded = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record))
    reloaded.load([(key, value), ("OTHER/pdq/1", {**value, "bank": "OTHER"})])
    assert reloaded.record_ids() == ["e1"]
    assert reloaded.writes({"e1": reloaded.convert("e1", None)}, iter(())) == [(T.BANK_SIGNALS, key, None)]


def test_credentials_are_refused_without_a_key_with_a_way_out():
    api = exchange_api("ncmec")
    with pytest.raises(CredentialsUnavailable, match="HMAS_SECRET_KEY"):
        sealed_record(api, {"user": "u", "password": "p"}, "")
    assert "TX_NCMEC_CREDENTIALS" in where_to_provide(api)
    with pytest.raises(CredentialsUnavailable, match="takes no credentials"):
        sealed_record(exchange_api("sample"), {"x": 1}, "key")


def test_credentials_are_sealed_on_the_topic():
    fernet = pytest.importorskip("cryptography.fernet")
    key = fernet.Fernet.generate_key().decode()
    api = exchange_api("fb_threatexchange")
    record = sealed_record(api, {"api_token": "1234|secret-value"}, key)
    assert "secret-value" not in json.dumps(record)
    assert unsealed(api, record, key).api_token == "1234|secret-value"
    with pytest.raises(CredentialsUnavailable, match="do not open"):
        unsealed(api, record, fernet.Fernet.generate_key().decode())


def test_errors_are_redacted():
    text = redacted(RuntimeError("GET https://graph.facebook.com/x?access_token=1234|abcd&limit=5 failed"))
    assert "abcd" not in text and "limit=5" in text


def test_the_held_map_follows_topic_order_and_a_full_fetch_removes_what_it_did_not_see(tmp_path):
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    bank = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record), tmp_path)
    fetched = {"e1": ncmec_entry("e1", MD5), "e2": ncmec_entry("e2", "b" * 32)}
    writes = bank.writes({record_id(k): bank.convert(k, v) for k, v in fetched.items()}, iter([1, 2]))
    [key1, key2] = [key for _, key, _ in writes]
    assert len(bank) == 2

    reloaded = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record), tmp_path)
    reloaded.load([(key, value) for _, key, value in writes] + [(key2, None)])  # e2 removed later in the topic
    assert reloaded.record_ids() == ["e1"] and len(reloaded) == 1
    reloaded.saw(["e3"])
    assert reloaded.removals() == [(T.BANK_SIGNALS, key1, None)] and len(reloaded) == 0
    bank.close()
    reloaded.close()
    assert list(tmp_path.iterdir()) == []


def test_a_full_fetch_into_an_empty_bank_removes_nothing_it_brought(tmp_path):
    """Loaded empty, the bank needs no seen marks: what it holds at the end came from this fetch,
    even records that the fetch returned only once, early."""
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    bank = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record), tmp_path)
    bank.load([])
    converted = {record_id(k): bank.convert(k, v) for k, v in {"e1": ncmec_entry("e1", MD5)}.items()}
    bank.saw(converted)
    bank.writes(converted, iter([1]))
    bank.saw(["e2"])
    assert bank.held.unseen() == ["e1"]  # no marks written...
    assert bank.removals() == [] and len(bank) == 1  # ...and nothing removed
    bank.close()


def test_the_bench_exchange_resumes_from_its_checkpoint_and_converts_like_the_package():
    from ops.bench.random_exchange import RandomPdqCheckpoint, RandomPdqConfig, RandomPdqExchange

    api = RandomPdqExchange(RandomPdqConfig(name="RANDOM", api="random_pdq", signals=12, per_delta=5))
    deltas = list(api.fetch_iter([], None))
    assert [len(d.updates) for d in deltas] == [5, 5, 2]
    assert [d.checkpoint.fetched for d in deltas] == [5, 10, 12]
    [resumed] = api.fetch_iter([], RandomPdqCheckpoint(10))
    assert resumed.updates.keys() == deltas[2].updates.keys()

    # records whose keys are their signals convert without the package's per-record conversion,
    # to what that conversion gives
    bank = BankOfExchange("RANDOM", RandomPdqExchange, api.collab)
    (kind, code), meta = next(iter(deltas[0].updates.items()))
    by_package = RandomPdqExchange.naive_convert_to_signal_type(list(FETCHED_SIGNAL_TYPES), api.collab, {(kind, code): meta})
    assert [(t.get_name(), s) for t, signals in by_package.items() for s in signals] == [(kind, code)]
    assert list(bank.convert((kind, code), meta)) == [(kind, code)]
    assert bank.convert(("pdq", "not a hash"), meta) == {} and bank.convert(("sha1", code), meta) == {}
    # ThreatExchange's API subclasses the simple-updates APIs with a conversion of its own: it keeps it
    assert keys_are_signals(exchange_api("local_file")) and not keys_are_signals(exchange_api("fb_threatexchange"))


# -- deltas regrouped into the fetcher's transactions -------------------------------------------
@dataclass
class AtCheckpoint(state.FetchCheckpointBase):
    at: int = 0

    def get_progress_timestamp(self) -> int:
        return self.at


def _delta(keys: list[str], at: int) -> state.FetchDelta:
    return state.FetchDelta({k: None for k in keys}, AtCheckpoint(at=at))


def test_fetch_batches_join_small_deltas_split_large_ones_and_carry_the_last_complete_checkpoint():
    deltas = [_delta(["a", "b"], 1), _delta(["c"], 2), _delta(["d", "e", "f", "g", "h"], 3), _delta([], 4),
              _delta(["i"], 5)]
    batches = [([k for k, _ in b.items], b.checkpoint.at if b.checkpoint else None)
               for b in fetch_batches(iter(deltas), None, 3)]
    assert batches == [
        (["a", "b", "c"], 2),  # two deltas end in it: the later checkpoint
        (["d", "e", "f"], None),  # delta 3 goes on past it: no checkpoint yet
        (["g", "h", "i"], 5),  # the rest of 3, the empty 4 and 5
    ]


def test_fetch_batches_refuse_a_checkpoint_that_goes_back():
    batches = fetch_batches(iter([_delta(["a"], 5), _delta(["b"], 4)]), AtCheckpoint(at=3), 1)
    assert [k for k, _ in next(batches).items] == ["a"]
    with pytest.raises(CheckpointWentBack):
        list(batches)


def test_a_record_that_changes_its_signal_keeps_its_content_id_and_drops_the_old_signal(tmp_path):
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    bank = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record), tmp_path)
    bank.load([])
    [(_, old_key, first)] = bank.writes(bank.convert_batch([("e1", ncmec_entry("e1", MD5))]), iter([7]))
    converted = bank.convert_batch([("e1", ncmec_entry("e1", "b" * 32))])
    before, wanted = bank.held_before(converted)
    assert before == {"e1": (7, {old_key})} and wanted == 0
    [(_, new_key, changed), tombstone] = bank.writes(converted, iter(()), before)
    assert changed["bank_content_id"] == 7 and changed["value"] == "b" * 32 and tombstone == (T.BANK_SIGNALS, old_key, None)
    assert bank.held.get(["e1"]) == {"e1": (7, {new_key})} and len(bank) == 1
    [(_, again, _)] = bank.writes(converted, iter(()))  # fetched again unchanged: no tombstone, no new id
    assert again == new_key and bank.held.get(["e1"]) == {"e1": (7, {new_key})}
    bank.close()


def test_a_signal_that_the_signal_type_refuses_is_no_signal_of_the_record():
    from ops.bench.random_exchange import RandomPdqConfig, RandomPdqExchange

    bank = BankOfExchange("RANDOM", RandomPdqExchange, RandomPdqConfig(name="RANDOM", api="random_pdq"))
    meta = state.FetchedSignalMetadata()
    converted = bank.convert_batch([(("pdq", "zz"), meta), (("pdq", "AB" * 32), meta)])
    assert converted['["pdq", "zz"]'] == {} and bank.rejected == 1
    assert list(converted['["pdq", "' + "AB" * 32 + '"]']) == [("pdq", "ab" * 32)]  # as the type normalises it
    bank.close()


@pytest.mark.parametrize("key", [("pdq", "ab" * 32), ("md5", 'a"b'), ("x", "back\\slash"), ("é", "ü"), ("", ""), ("a", "b", "c")])
def test_record_ids_are_the_json_of_the_key(key):
    assert record_id(key) == json.dumps(list(key))


def test_a_batch_converts_as_its_records_do_one_by_one():
    record = exchange_record("NCMEC", "ncmec", NCMEC_API_JSON)
    bank = BankOfExchange("NCMEC", NCMECSignalExchangeAPI, collab_config(record))
    items = [(f"e{i}", ncmec_entry(f"e{i}", f"{i:032x}", deleted=i == 3)) for i in range(6)]
    assert bank.convert_batch(items) == {rid: bank.convert(rid, value) for rid, value in items}
    bank.close()
