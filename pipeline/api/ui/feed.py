"""The live feed: matches and actions as they are written, pushed to the browser by server-sent
events (GET /ui/feed/events) from the API's follower of hma.matches, hma.retro-matches and
hma.actions (pipeline/api/activity.py). The page draws the newest on load; a small EventSource
script adds each new one on top."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import web

from pipeline.api.ui.frame import Frame
from pipeline.api.ui.render import Html, join, render, tag
from pipeline.clock import iso_utc

HEARTBEAT_S = 15  # a comment line now and then keeps proxies from closing an idle stream


def event_line(event: dict[str, Any]) -> str:
    """What one feed entry says (the page's script builds the same text from the event's JSON)."""
    kind = event["kind"].replace("-", " ")
    banks = ", ".join(event["banks"]) or "no effective hit"
    text = f"{kind} {event['content_id']}: "
    text += f"{event['action']} (banks {banks})" if event["kind"] == "action" else banks
    if event["held_back"]:
        text += f"; held back: {'; '.join(event['held_back'])}"
    return text


class FeedPages(Frame):
    def routes(self) -> list[tuple[str, str, Any]]:
        return [("GET", "/ui/feed", self.feed)]

    async def feed(self, request: web.Request) -> web.StreamResponse:
        entries = join(tag("li", join([tag("time", iso_utc(e["at"])), " ", tag("span", event_line(e))]),
                           class_=f"feed-{e['kind']}") for e in self.state.activity.newest_feed())
        return self.page(request, "Live feed", render("feed.html", entries=Html(entries)))

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        activity = self.state.activity
        queue = activity.subscribe()
        try:
            await response.write(b": connected\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
                except asyncio.TimeoutError:
                    await response.write(b": still here\n\n")
                    continue
                if event is None:  # the API is shutting down
                    break
                data = json.dumps({**event, "text": event_line(event), "time": iso_utc(event["at"])})
                await response.write(f"event: {event['kind']}\ndata: {data}\n\n".encode())
        except ConnectionResetError:
            pass  # the browser went away
        finally:
            activity.unsubscribe(queue)
            with contextlib.suppress(Exception):
                await response.write_eof()
        return response
