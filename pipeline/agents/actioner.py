"""actioner: hma.retro-matches -> hma.actions, one per action name of the effective hits, marked
retroactive. (Live matches get their actions from the matcher or merger, with the match record.)"""

from __future__ import annotations

import faust

from pipeline import metrics
from pipeline import topics as T
from pipeline.matching import actions_for
from pipeline.services.worker import WorkerServices

STAGE = "actioner"
BATCH, BATCH_WITHIN_S = 256, 0.05


def register(app: faust.App, services: WorkerServices) -> None:
    @app.agent(services.topic(T.RETRO_MATCHES), name=f"{app.conf.id}.actioner")
    async def actioner(stream: faust.StreamT) -> None:
        view = await services.bank_view.ready()
        async for events in services.delivery.batches(stream, BATCH, BATCH_WITHIN_S):
            good, records = await services.events.decode_batch(events, T.RETRO_MATCHES, STAGE)
            actions = [(event.message.key, action) for event, record in zip(good, records)
                       for action in actions_for(record, view)]
            metrics.count_actions(action for _, action in actions)
            await services.output.send_many(T.ACTIONS, actions, STAGE)
