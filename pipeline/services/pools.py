"""The executors a worker runs blocking work on, made when first used and shut down with it."""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context

from pipeline.config import Settings

FETCH_THREADS = 8


class ExecutorPools:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hash: ProcessPoolExecutor | None = None
        self._fetch: ThreadPoolExecutor | None = None
        self._index: ThreadPoolExecutor | None = None

    @property
    def hash(self) -> ProcessPoolExecutor:
        """Hashing runs in worker processes so that both cores hash while the loop stays free."""
        if self._hash is None:
            self._hash = ProcessPoolExecutor(self.settings.hash_workers, mp_context=get_context("spawn"))
        return self._hash

    @property
    def index(self) -> ThreadPoolExecutor:
        """One thread for index searches (see agents/matcher.py: lookup)."""
        if self._index is None:
            self._index = ThreadPoolExecutor(1, thread_name_prefix="index")
        return self._index

    @property
    def fetch(self) -> ThreadPoolExecutor:
        """Threads that download uploads' URLs (connectors/fetch.py)."""
        if self._fetch is None:
            self._fetch = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="fetch")
        return self._fetch

    def shutdown(self) -> None:
        pools: tuple[Executor | None, ...] = (self._hash, self._fetch, self._index)
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
