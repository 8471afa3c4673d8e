"""An asyncio event loop in a thread of its own, for blocking code (Django views, the admin) to run coroutines on.

What lives in the loop outlives one request: open MCP sessions and their HTTP connections, and calls that a request
stopped waiting for. One loop per process, started on first use (and again in a forked child, which inherits the
parent's loop object but not its thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class BackgroundLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid() or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                self._pid = os.getpid()
                threading.Thread(target=self._loop.run_forever, name="background-loop", daemon=True).start()
            return self._loop

    def submit(self, coroutine: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Run `coroutine` in the loop; the returned future is done when it is (whether or not anyone waits)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


background_loop = BackgroundLoop()
