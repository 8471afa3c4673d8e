"""Delivery of a message to the coroutine that waits for it, in whichever web process it waits.

An MCP client answers the endpoint's request (an elicitation, a sampling request) with a new HTTP POST, and
cancels a call with another; neither need reach the process whose request stream is waiting. A waiter registers
its key (`expecting`); `deliver` hands the message to it: directly when it waits in this process, else through a
Redis channel named by the key, to which the waiting process subscribed (with REDIS_URL; without it there is one
web process, and the first path is the only one).

Waiters live in the background loop (`integrations.loop`); `deliver` may be called from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio
from django.conf import settings

from integrations.loop import background_loop

logger = logging.getLogger(__name__)

_CHANNEL_PREFIX = "mcp-endpoint:"


class Mailbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._publisher: redis.Redis | None = None
        self._subscriber: redis.asyncio.client.PubSub | None = None
        self._reader: asyncio.Task[None] | None = None

    def _reset_after_fork(self) -> None:
        if self._pid != os.getpid():  # a forked child inherits the parent's maps, not its loop or connections
            self._pid = os.getpid()
            self._waiting, self._publisher, self._subscriber, self._reader = {}, None, None, None

    @contextlib.asynccontextmanager
    async def expecting(self, key: str) -> AsyncIterator[asyncio.Future[dict[str, Any]]]:
        """A future that `deliver(key, message)` resolves, from this process or another, while the block runs."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._reset_after_fork()
            self._waiting[key] = future
        try:
            if settings.REDIS_URL:
                await self._subscribe(key)
            yield future
        finally:
            with self._lock:
                if self._waiting.get(key) is future:
                    del self._waiting[key]
            if settings.REDIS_URL and self._subscriber is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    await self._subscriber.unsubscribe(_CHANNEL_PREFIX + key)

    def deliver(self, key: str, message: dict[str, Any]) -> bool:
        """Hand `message` to whoever waits for `key`; False when nobody does (it is dropped)."""
        with self._lock:
            self._reset_after_fork()
            future = self._waiting.get(key)
        if future is not None:
            background_loop.loop.call_soon_threadsafe(_resolve, future, message)
            return True
        if not settings.REDIS_URL:
            return False
        try:
            receivers = self._redis().publish(_CHANNEL_PREFIX + key, json.dumps(message, separators=(",", ":")))
        except (redis.RedisError, OSError):
            logger.warning("MCP endpoint: a message could not be passed on through Redis")
            return False
        return int(receivers) > 0  # type: ignore[arg-type]

    def _redis(self) -> redis.Redis:
        with self._lock:
            if self._publisher is None:
                self._publisher = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
            return self._publisher

    async def _subscribe(self, key: str) -> None:
        if self._subscriber is None:
            client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)
            self._subscriber = client.pubsub(ignore_subscribe_messages=True)
        await self._subscriber.subscribe(_CHANNEL_PREFIX + key)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(self._subscriber), name="mcp-mailbox")

    async def _read(self, subscriber: redis.asyncio.client.PubSub) -> None:
        while True:
            try:
                message = await subscriber.get_message(timeout=1.0)
            except (redis.RedisError, OSError, RuntimeError):
                logger.warning("MCP endpoint: the Redis subscription failed; reconnecting")
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            with self._lock:
                future = self._waiting.get(channel.removeprefix(_CHANNEL_PREFIX))
            if future is not None:
                with contextlib.suppress(ValueError):
                    _resolve(future, json.loads(message["data"]))


def _resolve(future: asyncio.Future[dict[str, Any]], message: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(message)


mailbox = Mailbox()
