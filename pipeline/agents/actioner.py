"""actioner: hma.matches -> hma.actions for uploads with at least one effective match."""

from __future__ import annotations

import faust

from pipeline import topics as T
from pipeline.app import PipelineContext
from pipeline.matching import actions_for
from schemas.codec import DecodeError

STAGE = "actioner"


def register(app: faust.App, ctx: PipelineContext) -> None:
    @app.agent(ctx.topic(T.MATCHES), name=f"{app.conf.id}.actioner")
    async def actioner(stream: faust.StreamT) -> None:
        view = await ctx.bank_view()
        async for event in stream.events():
            try:
                record = T.MATCHES.codec.decode(event.value)
            except DecodeError as exc:
                await ctx.send_dead_letter(event, str(exc), STAGE)
                continue
            for action in actions_for(record, view):
                await ctx.send(T.ACTIONS, event.message.key, action)
