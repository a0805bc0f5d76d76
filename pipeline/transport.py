"""The Kafka transport of the worker's Faust app: Faust's aiokafka transport, with each fetched
message handed to the streams in place when it can be.

Faust's consumer gives every fetched message to the conductor through
`wait_first(deliver(message), suspend_flow.wait())`, so that a rebalance can interrupt a delivery
that waits for room in a full stream buffer. That costs four tasks and an asyncio.wait per
message, about 40% of a worker's main thread at 2,000 uploads/s. The delivery almost never
waits (the buffers have room), so here it is started in place: when it completes without
suspending, no task is made; when it does suspend, the rest of it runs under Faust's own
wait_first, interruptible by a rebalance as before.

The app reaches it through the broker URL scheme `hmas://` (registered in pyproject.toml under
Faust's "faust.transports" entry points).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Coroutine

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

SCHEME = "hmas"


class Consumer(faust_aiokafka.Consumer):
    async def wait_first(self, *coros: Any, timeout: float | None = None) -> WaitResults:
        if not self._is_delivery(coros, timeout):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_suspended = coros
        try:
            step = delivery.send(None)
        except StopIteration as done:  # delivered without waiting: the common case
            flow_suspended.close()
            return WaitResults([delivery], [done.value], False)
        except BaseException:  # it failed at once: as from Faust's wait_first, the error propagates
            flow_suspended.close()
            raise
        return await super().wait_first(_finish(delivery, step), flow_suspended)

    def _is_delivery(self, coros: tuple[Any, ...], timeout: float | None) -> bool:
        """The call of Faust's fetch loop: a fresh delivery coroutine and `suspend_flow.wait()`."""
        if timeout is not None or len(coros) != 2 or self.suspend_flow.is_set() or self.should_stop:
            return False
        delivery, waiter = coros
        return (
            inspect.iscoroutine(delivery) and inspect.getcoroutinestate(delivery) == inspect.CORO_CREATED
            and inspect.iscoroutine(waiter) and waiter.cr_frame is not None
            and waiter.cr_frame.f_locals.get("self") is self.suspend_flow
        )


async def _finish(coro: Coroutine, step: Any) -> Any:
    """Drive a coroutine that suspended on `step` (what it yielded) to its end, as a Task would."""
    try:
        while True:
            if step is None:  # a bare yield: run again on the next loop cycle
                await asyncio.sleep(0)
            else:
                step._asyncio_future_blocking = False
                try:
                    await asyncio.wait([step])
                except asyncio.CancelledError:
                    step.cancel()
                    coro.throw(asyncio.CancelledError())
                    raise
            step = coro.send(None)
    except StopIteration as done:
        return done.value
    finally:
        coro.close()


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
