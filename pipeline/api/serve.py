"""How `hmas api` serves: in one process, or in several that share one copy of the bank view.

With HMAS_API_PROCESSES=N (N > 1) the process first loads the view (from the API's snapshot,
then the tail of the topics), then forks N server processes. They share the view's memory page
by page (copy on write: lookups read the index's arrays and never write them), each follows the
topics on from where the view was loaded, and all accept connections on the one port
(SO_REUSEPORT: the kernel spreads connections over them). A bank change copies only the pages it
touches in each process; an index merge (after about 0.2% of the bank changed) rewrites a table
per process, so under heavy churn each process gradually comes to hold its own copy.

The first process saves the snapshot; the parent forwards SIGTERM/SIGINT to them all, and when
one ends it stops the others, so that a deployment restarts the whole.

Each server process runs uvloop's event loop (HMAS_API_EVENT_LOOP) and a short interpreter switch
interval (HMAS_API_SWITCH_INTERVAL_MS): its index thread hands every batch of searches back to the
loop, and with Python's default of 5 ms each hand-off can wait that long for the loop to let go
(BENCHMARKS.md, "The HTTP API": 1.1-1.2x the lookups/s at 1M with two processes, 2.3x with one at
64 connections; at 10M, where the two cores are busy searching, not shown to matter).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from typing import Callable

from aiohttp import web

from pipeline.api.app import create_api
from pipeline.api.lean_front import LEAN_KEY, LeanSite
from pipeline.api.state import SNAPSHOT_ROLE, ApiState
from pipeline.config import Settings
from pipeline.services.bank_view import LoadedView, load_view
from pipeline.state.snapshot import snapshot_path

log = logging.getLogger(__name__)
Say = Callable[[str], None] | None


def serve(settings: Settings, host: str, port: int, say: Say = None) -> int:
    """Run the API until SIGTERM/SIGINT; the exit status."""
    if settings.api_processes <= 1:
        run_server(create_api(settings), host, port, serving_loop(settings), say=say)
        return 0
    loaded = asyncio.run(load_view(settings, snapshot_path(settings, SNAPSHOT_ROLE)))
    # the loaded view's objects are never scanned by the collector again: no long collections while
    # serving, and the pages they sit on stay shared after the fork (a scan writes to every object)
    gc.freeze()
    log.info("bank view loaded; starting API processes", extra={
        "processes": settings.api_processes, "signals": loaded.view.signal_count()})
    children = [_fork(settings, loaded, host, port, number, say) for number in range(settings.api_processes)]
    return _supervise(children)


def run_server(app: web.Application, host: str, port: int, loop: asyncio.AbstractEventLoop,
               reuse_port: bool = False, say: Say = None, signals: bool = True) -> None:
    """Serve `app` on `loop` until SIGTERM/SIGINT (`signals`: only a main thread can take them) or
    the loop is stopped, with the lean front (pipeline/api/lean_front.py) on every connection; then
    stop as aiohttp's run_app does (answers under way finish)."""
    asyncio.set_event_loop(loop)
    runner = web.AppRunner(app, access_log=None, handle_signals=signals)
    try:
        loop.run_until_complete(runner.setup())
        site = LeanSite(runner, app[LEAN_KEY], host, port, reuse_port=reuse_port)
        loop.run_until_complete(site.start())
        if say is not None:
            say(f"======== Running on {site.name} ========")
        loop.run_forever()
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        loop.run_until_complete(runner.cleanup())
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def serving_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    """A new event loop for one server process (uvloop's unless HMAS_API_EVENT_LOOP=asyncio), with
    the interpreter's switch interval set for the hand-offs between the loop and the index thread."""
    sys.setswitchinterval(settings.api_switch_interval_ms / 1000)
    if settings.api_event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _fork(settings: Settings, loaded: LoadedView, host: str, port: int, number: int, say: Say) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        state = ApiState(settings, loaded=loaded, saves_snapshots=number == 0)
        run_server(create_api(settings, state), host, port, serving_loop(settings), reuse_port=True,
                   say=say if number == 0 else None)
        code = 0
    except BaseException:
        log.exception("API process failed", extra={"process": number})
    finally:
        logging.shutdown()
        os._exit(code)


def _supervise(children: list[int]) -> int:
    """Wait for the server processes; a signal, or one of them ending, stops them all."""
    alive = set(children)

    def stop_all(*_: object) -> None:
        for pid in alive:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    status = 0
    while alive:
        pid, wait_status = os.wait()
        alive.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0:
            log.warning("API process ended", extra={"pid": pid, "exit_code": code})
            status = status or 1
        stop_all()
    return status
