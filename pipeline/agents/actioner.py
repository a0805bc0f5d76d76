"""actioner: hma.matches -> hma.actions for uploads with at least one effective match."""

from __future__ import annotations

import faust

from pipeline import topics as T
from pipeline.app import PipelineContext
from pipeline.matching import actions_for

STAGE = "actioner"


def register(app: faust.App, ctx: PipelineContext) -> None:
    @app.agent(ctx.topic(T.MATCHES), name=f"{app.conf.id}.actioner")
    async def actioner(stream: faust.StreamT) -> None:
        view = await ctx.bank_view()
        async for event, record in ctx.records(stream, T.MATCHES, STAGE):
            for action in actions_for(record, view):
                await ctx.send(T.ACTIONS, event.message.key, action, STAGE)
