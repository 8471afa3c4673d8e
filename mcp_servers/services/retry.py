"""How a service tells its task to try again later."""

from __future__ import annotations


class Retryable(Exception):
    """A transient failure on an attempt that is not the last one: the task retries it with backoff (the one retry
    policy, `mcp_servers.tasks.base.ServiceTask`). On the last attempt services record the failure instead."""
