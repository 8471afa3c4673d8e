"""Exceptions raised inside anyio task groups arrive wrapped in (nested) exception groups."""

from __future__ import annotations

from collections.abc import Iterator


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """Every exception in `exc`, unwrapping exception groups at any depth; `exc` itself if it is not a group."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc
