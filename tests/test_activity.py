"""What the API's activity keeps for the UI: latency per minute, matches per bank, the feed and its
subscribers, lag and throughput per agent (the Kafka reading itself is covered by the UI tests)."""

import asyncio

from pipeline import topics as T
from pipeline.api.activity import AGENT_INPUTS, Activity, AgentSample
from pipeline.clock import now_ms
from pipeline.config import Settings


def match_record(content_id, banks_statuses, submitted_ago_ms=250, retroactive=False):
    at = now_ms()
    return {"content_id": content_id, "matched_at": at, "submitted_at": at - submitted_ago_ms, "retroactive": retroactive,
            "matches": [{"bank": b, "status": s} for b, s in banks_statuses]}


def test_matches_are_counted_per_bank_and_their_latency_per_minute():
    activity = Activity(Settings(), "group")
    activity.observe(T.MATCHES, match_record("a", [("FEED", "match"), ("OTHER", "suppressed")], 250))
    activity.observe(T.MATCHES, match_record("b", [("FEED", "match")], 4000))
    activity.observe(T.MATCHES, match_record("c", [], 100))
    activity.observe(T.RETRO_MATCHES, match_record("d", [("FEED", "match")], 10**8, retroactive=True))
    assert sum(v for _, v in activity.bank_series("FEED")) == 3 and sum(v for _, v in activity.bank_series("OTHER")) == 0
    latency = activity.latency_series()
    [(_, p50)], [(_, p99)] = latency["p50"], latency["p99"]
    assert 250 <= p50 < 300 and 4000 <= p99 < 4400  # the retroactive one is no upload-to-match latency
    kinds = [(e["kind"], e["content_id"]) for e in activity.newest_feed()]
    assert kinds == [("retro-match", "d"), ("match", "b"), ("match", "a")]  # "c" hit nothing
    assert activity.newest_feed()[-1]["held_back"] == ["OTHER: suppressed"]


def test_subscribers_get_each_event_and_the_end_of_the_stream():
    async def run():
        activity = Activity(Settings(), "group")
        queue = activity.subscribe()
        activity.observe(T.ACTIONS, {"content_id": "x", "action": "review", "acted_at": now_ms(),
                                     "matches": [{"bank": "FEED", "status": "match"}]})
        activity.end_subscriptions()
        event, end = queue.get_nowait(), queue.get_nowait()
        activity.unsubscribe(queue)
        return event, end, activity.subscribers

    event, end, left = asyncio.run(run())
    assert (event["kind"], event["action"], event["banks"], end, left) == ("action", "review", ["FEED"], None, set())


def test_lag_and_throughput_per_agent_from_the_offset_samples():
    activity = Activity(Settings(), "group")
    zero = {agent: 0 for agent in AGENT_INPUTS}
    activity.samples.append(AgentSample(0, {**zero, "matcher": 100}, {**zero, "matcher": 150}))
    activity.samples.append(AgentSample(10_000, {**zero, "matcher": 600}, {**zero, "matcher": 700}))
    throughput, lag = activity.agent_series()
    assert throughput["matcher"] == [(10_000, 50.0)] and throughput["hasher"] == [(10_000, 0.0)]
    assert lag["matcher"] == [(0, 50.0), (10_000, 100.0)]
