"""The Kafka transport of the worker's Faust app: Faust's aiokafka transport, with each fetched
message handed to the streams in place when it can be.

Faust's consumer gives every fetched message to the conductor through
`wait_first(deliver(message), suspend_flow.wait())`, so that a rebalance can interrupt a delivery
that waits for room in a full stream buffer. That costs four tasks and an asyncio.wait per
message, about 40% of a worker's main thread at 2,000 uploads/s. The delivery almost never
waits (the buffers have room), so here it is started in place: when it completes without
suspending, no task is made; when it does suspend, the rest of it runs under Faust's own
wait_first, interruptible by a rebalance as before.

This leans on Faust's and mode's internals (the shape of the fetch loop's call, `suspend_flow`,
WaitResults), so it is only used on the versions it was written for (WRITTEN_FOR, pinned in
pyproject.toml); on others the worker logs a warning and runs Faust's stock consumer.
tests/test_transport.py runs Faust's real fetch loop and fails if the in-place path is not taken.

The producer is Faust's, whose flush (which Faust runs before every offset commit) raises once a
delivery failed (pipeline/services/output.py reports them), so no offset is committed past a
lost output.

The app reaches it through the broker URL scheme `hmas://` (registered in pyproject.toml under
Faust's "faust.transports" entry points).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Coroutine, Mapping

from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.services import WaitResults

log = logging.getLogger(__name__)
SCHEME = "hmas"
WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}


def installed_versions() -> dict[str, str]:
    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return {name: installed(name) for name in WRITTEN_FOR}


def in_place_delivery_supported(installed: Mapping[str, str] | None = None) -> bool:
    """Whether the installed Faust and aiokafka are those the in-place delivery was written for;
    a warning says so when they are not."""
    installed = installed_versions() if installed is None else installed
    if dict(installed) == WRITTEN_FOR:
        return True
    log.warning("in-place delivery is written for other versions: running Faust's stock consumer",
                extra={"written_for": WRITTEN_FOR, "installed": dict(installed)})
    return False


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer, with each fetched message delivered in place when it can be."""

    in_place_deliveries = 0  # deliveries that completed without a task (what the tests look for)

    async def wait_first(self, *coros: Any, timeout: float | None = None) -> WaitResults:
        if not self._is_delivery(coros, timeout):
            return await super().wait_first(*coros, timeout=timeout)
        delivery, flow_suspended = coros
        try:
            step = delivery.send(None)
        except StopIteration as done:  # delivered without waiting: the common case
            self.in_place_deliveries += 1
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


class Producer(faust_aiokafka.Producer):
    """Faust's aiokafka producer, whose flush raises once a delivery has failed (`fail`)."""

    delivery_failure: BaseException | None = None

    def fail(self, failure: BaseException) -> None:
        if self.delivery_failure is None:
            self.delivery_failure = failure

    async def flush(self) -> None:
        await super().flush()
        if self.delivery_failure is not None:
            raise self.delivery_failure


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer

    def create_consumer(self, callback: Any, **kwargs: Any) -> faust_aiokafka.Consumer:
        """The in-place consumer on the versions it was written for, Faust's stock one on others."""
        consumer_class = Consumer if in_place_delivery_supported() else faust_aiokafka.Consumer
        return consumer_class(self, callback=callback, loop=self.loop, **kwargs)
