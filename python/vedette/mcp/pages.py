"""Pages of the listings toward a client (docs/mcp.md, "Pages").

A listing is served in pages of ``[mcp] page_size`` items, ordered by each
item's key (a tool's or prompt's name, a resource's URI, a template's URI
template). A page's ``nextCursor`` names the last key it holds, and the next
page starts after that key in the listing as it is then: a listing that
changes between two pages skips no item that was there throughout and repeats
none. A cursor only says where to start in the caller's own listing, so one
the client makes up reveals nothing; one that is not a cursor of this kind is
refused (-32602).
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Sequence
from typing import TypeVar

from mcp import types
from mcp.shared.exceptions import MCPError

Item = TypeVar("Item")

# What every cursor starts with (a later layout would change it).
_MARK = "v1:"
# The largest cursor read (a key longer than this is not one of ours).
MAX_CURSOR_CHARS = 8192


def page_of(
    items: Sequence[Item], key: Callable[[Item], str], cursor: str | None, size: int
) -> tuple[list[Item], str | None]:
    """The page of ``items`` that ``cursor`` (``None``: the first) starts,
    and the cursor of the next page (``None`` after the last)."""
    ordered = sorted(items, key=key)
    start = 0
    if cursor is not None:
        after = _after(cursor)
        start = bisect.bisect_right([key(item) for item in ordered], after)
    page = ordered[start : start + size]
    more = start + size < len(ordered)
    return page, (_cursor(key(page[-1])) if more and page else None)


def _cursor(last: str) -> str:
    return base64.urlsafe_b64encode(f"{_MARK}{last}".encode()).decode("ascii")


def _after(cursor: str) -> str:
    """The last key of the page before; ``MCPError`` if ``cursor`` is none of ours."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise MCPError(types.INVALID_PARAMS, "invalid cursor: too long")
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError) as err:
        raise MCPError(types.INVALID_PARAMS, "invalid cursor") from err
    if not decoded.startswith(_MARK):
        raise MCPError(types.INVALID_PARAMS, "invalid cursor")
    return decoded.removeprefix(_MARK)


def cursor_of(params: types.PaginatedRequestParams | None) -> str | None:
    return params.cursor if params is not None else None
