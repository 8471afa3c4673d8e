"""One HTTP request's JSON-RPC exchange with an MCP client: the channel the SDK's server kernel talks back through.

The request thread hands the client's request to the background loop and waits for what comes back (`next`): the
response, and before it whatever the handler sends on the way (progress and log notifications, and, when the
client can answer them, its own requests: an elicitation, a sampling request). The first thing back decides the
HTTP answer: the response alone is `application/json`; anything else opens a `text/event-stream` that carries the
rest. The client answers a request of ours with a new POST, which may reach another process: the answer comes
back through the mailbox, keyed by the session and the request's id.

`Exchange` is the `DispatchContext` of `mcp.shared.dispatcher` (structurally): `send_raw_request`, `notify`,
`progress`, `request_id`, `can_send_request`, `cancel_requested`, `transport`, `message_metadata`.
"""

from __future__ import annotations

import json
import queue
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.transport_context import TransportContext
from mcp_types import INTERNAL_ERROR, ErrorData, RequestId

from mcp_servers.endpoint.mailbox import mailbox


@dataclass(frozen=True)
class Outgoing:
    """A JSON-RPC message for the client; `final` for the response (or nothing, for a cancelled request)."""

    message: dict[str, Any] | None
    final: bool = False


def reply_key(session_id: str, request_id: RequestId) -> str:
    return f"reply:{session_id}:{request_id}"


def cancel_key(session_id: str, request_id: RequestId) -> str:
    return f"cancel:{session_id}:{json.dumps(request_id)}"


class Exchange:
    def __init__(
        self,
        *,
        request_id: RequestId,
        session_id: str | None,
        can_stream: bool,
        progress_token: Any,
        answer_timeout: float,
    ) -> None:
        self.request_id = request_id
        self.session_id = session_id
        self.can_stream = can_stream
        self.progress_token = progress_token
        self.answer_timeout = answer_timeout
        self.message_metadata = None
        self._outgoing: queue.SimpleQueue[Outgoing] = queue.SimpleQueue()
        self._cancel: anyio.Event | None = None
        self.transport = TransportContext(kind="streamable-http", can_send_request=self.can_send_request)

    # --- the request thread's side ----------------------------------------------------------------------------

    def next(self, timeout: float) -> Outgoing | None:
        """The next message for the client, or None when none came within `timeout` seconds."""
        try:
            return self._outgoing.get(timeout=timeout)
        except queue.Empty:
            return None

    def finish(self, message: dict[str, Any] | None) -> None:
        self._outgoing.put(Outgoing(message, final=True))

    # --- the handler's side (the background loop) -------------------------------------------------------------

    @property
    def can_send_request(self) -> bool:
        """Whether the client can be asked something: over an event stream, in a session its answer can find."""
        return self.can_stream and self.session_id is not None

    @property
    def cancel_requested(self) -> anyio.Event:
        if self._cancel is None:
            self._cancel = anyio.Event()
        return self._cancel

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        if not self.can_stream:
            return  # a JSON answer carries the response only
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        self._outgoing.put(Outgoing(message))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        if self.progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        """Ask the client (on this request's event stream) and wait for its answer, which comes in a POST of its
        own, through the mailbox. Raises MCPError for an error answer or none within the timeout."""
        if not self.can_send_request or self.session_id is None:
            raise NoBackChannelError(method)
        request_id = f"srv-{secrets.token_hex(8)}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        timeout = (opts or {}).get("timeout", self.answer_timeout)
        async with mailbox.expecting(reply_key(self.session_id, request_id)) as answer:
            self._outgoing.put(Outgoing(message))
            with anyio.move_on_after(timeout):
                reply = await answer
                if isinstance(reply.get("error"), dict):
                    error = ErrorData.model_validate(reply["error"])
                    raise MCPError(code=error.code, message=error.message, data=error.data)
                result = reply.get("result")
                return result if isinstance(result, dict) else {}
        await self.notify("notifications/cancelled", {"requestId": request_id, "reason": "No answer in time."})
        raise MCPError(code=INTERNAL_ERROR, message=f"The client did not answer {method} within {timeout:g} seconds.")


def sse_event(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return f"event: message\ndata: {data}\n\n".encode()


SSE_PING = b": ping\n\n"
