"""actioner: hma.retro-matches -> hma.actions, one per action name of the effective hits, marked
retroactive. (Live matches get their actions from the matcher or merger, with the match record.)"""

from __future__ import annotations

import faust

from pipeline import topics as T
from pipeline.app import PipelineContext
from pipeline.matching import actions_for

STAGE = "actioner"
BATCH, BATCH_WITHIN_S = 256, 0.05


def register(app: faust.App, ctx: PipelineContext) -> None:
    @app.agent(ctx.topic(T.RETRO_MATCHES), name=f"{app.conf.id}.actioner")
    async def actioner(stream: faust.StreamT) -> None:
        view = await ctx.bank_view()
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
            good, records = await ctx.decode_events(events, T.RETRO_MATCHES, STAGE)
            actions = [(event.message.key, action) for event, record in zip(good, records)
                       for action in actions_for(record, view)]
            await ctx.send_many(T.ACTIONS, actions, STAGE)
