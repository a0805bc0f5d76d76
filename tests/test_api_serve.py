"""How an API server process runs: its event loop and the interpreter's switch interval."""

import asyncio
import sys

import pytest
import uvloop

from pipeline.api.serve import serving_loop
from pipeline.config import Settings


@pytest.mark.parametrize("kind, loop_type", [("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)])
def test_a_server_process_gets_the_configured_loop_and_switch_interval(kind, loop_type):
    before = sys.getswitchinterval()
    loop = serving_loop(Settings(api_event_loop=kind, api_switch_interval_ms=0.25))
    try:
        assert isinstance(loop, loop_type)
        assert sys.getswitchinterval() == pytest.approx(0.00025)

        async def answer() -> int:
            return await asyncio.sleep(0, 7)

        assert loop.run_until_complete(answer()) == 7
    finally:
        loop.close()
        sys.setswitchinterval(before)
