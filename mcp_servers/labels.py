"""`serverLabel`: a stable, model-facing prefix for tool names, derived from the display name.

Lower-case letters, digits and underscores, starting with a letter, at most 24 characters, so that
`<label>__<tool>` leaves 38 characters of the 64 that model APIs allow for a tool name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterator

SERVER_LABEL_MAX_LENGTH = 24
_NON_LABEL = re.compile(r"[^a-z0-9]+")


def label_base(display_name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode("ascii")
    base = _NON_LABEL.sub("_", ascii_name.lower()).strip("_")
    if not base or not base[0].isalpha():
        base = f"mcp_{base}".rstrip("_")
    return base[:SERVER_LABEL_MAX_LENGTH].rstrip("_")


_MAX_CANDIDATES = 999


def label_candidates(display_name: str, count: int = _MAX_CANDIDATES) -> list[str]:
    """The base, then `<base>_2`, `<base>_3`, ... each trimmed to fit the length bound (`count` in all)."""
    return list(_candidates(display_name, count))


def _candidates(display_name: str, count: int) -> Iterator[str]:
    base = label_base(display_name)
    yield base
    for n in range(2, count + 1):
        suffix = f"_{n}"
        yield base[: SERVER_LABEL_MAX_LENGTH - len(suffix)].rstrip("_") + suffix


def first_free_label(display_name: str, taken: Collection[str]) -> str:
    """The first candidate not in `taken`; made one at a time, since it is usually the first."""
    for candidate in _candidates(display_name, _MAX_CANDIDATES):
        if candidate not in taken:
            return candidate
    raise RuntimeError("no free server label")  # 999 servers with one display name
