"""The worker's Faust transport: fetched messages delivered in place, and the rest of a delivery
that waits run as a task that a rebalance can still interrupt."""

from __future__ import annotations

import asyncio

import faust
import pytest

from pipeline import transport


@pytest.fixture
def consumer():
    app = faust.App("transport-test", broker=f"{transport.SCHEME}://127.0.0.1:1", autodiscover=False)
    return app.consumer


def run(consumer, coro):
    """Run on the consumer's own event loop, as the worker does (Faust's waits are bound to it)."""
    return consumer.loop.run_until_complete(coro)


def test_the_app_gets_the_in_place_consumer(consumer):
    assert isinstance(consumer, transport.Consumer)


def test_a_delivery_that_does_not_wait_runs_in_place(consumer):
    ran = []

    async def deliver():
        ran.append(asyncio.current_task())
        return "delivered"

    async def main():
        tasks_before = len(asyncio.all_tasks())
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())
        return result, tasks_before, len(asyncio.all_tasks())

    result, before, after = run(consumer, main())
    assert result.results == ["delivered"] and not result.stopped
    assert before == after  # no task for the delivery, none left waiting on suspend_flow
    assert ran[0] is not None  # it ran inside the caller's task


def test_a_delivery_that_fails_at_once_raises(consumer):
    async def deliver():
        raise KeyError("no callback for this partition")

    async def main():
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    with pytest.raises(KeyError):
        run(consumer, main())


def test_a_delivery_that_waits_finishes_as_a_task(consumer):
    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            await asyncio.sleep(0)  # a bare yield
            value = await room  # like a put into a full stream buffer
            return value * 2

        asyncio.get_running_loop().call_later(0.05, room.set_result, 21)
        return await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    assert run(consumer, main()).results == [42]


def test_errors_of_a_waiting_delivery_propagate(consumer):
    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            await room

        asyncio.get_running_loop().call_later(0.01, room.set_exception, ValueError("no room"))
        await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

    with pytest.raises(ValueError, match="no room"):
        run(consumer, main())


def test_a_rebalance_interrupts_a_waiting_delivery(consumer):
    cleaned_up = []

    async def main():
        room = asyncio.get_running_loop().create_future()

        async def deliver():
            try:
                await room
            finally:
                cleaned_up.append(room.cancelled())

        asyncio.get_running_loop().call_later(0.05, consumer.stop_flow)  # what Faust does on a rebalance
        result = await consumer.wait_first(deliver(), consumer.suspend_flow.wait())

        async def cleanup_ran() -> None:
            while not cleaned_up:
                await asyncio.sleep(0)  # the cancelled delivery runs its `finally` on a later turn of the loop

        await asyncio.wait_for(cleanup_ran(), timeout=5)
        return result

    result = run(consumer, main())
    assert result.results == [True]  # suspend_flow.wait() won, as with Faust's own wait_first
    assert cleaned_up == [True]  # the delivery was cancelled and what it waited for with it


def test_other_waits_go_to_faust(consumer):
    async def main():
        async def slow():
            await asyncio.sleep(0.01)
            return "slow"

        return await consumer.wait_first(slow(), timeout=1.0)

    assert run(consumer, main()).results == ["slow"]
