"""Pages of the gateway's listings toward a client (docs/mcp.md, "Pages")."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("mcp")

from mcp import types
from mcp.shared.exceptions import MCPError

from vedette.mcp.pages import MAX_CURSOR_CHARS, page_of


def every_page(items: list[str], size: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page, cursor = page_of(items, str, cursor, size)
        pages.append(page)
        if cursor is None:
            return pages


def test_the_pages_hold_every_item_once_in_order():
    items = [f"tool-{n:02}" for n in reversed(range(10))]
    pages = every_page(items, 4)
    assert [len(page) for page in pages] == [4, 4, 2]
    assert [item for page in pages for item in page] == sorted(items)


def test_a_listing_that_fits_one_page_has_no_cursor():
    assert page_of(["b", "a"], str, None, 2) == (["a", "b"], None)
    assert page_of([], str, None, 2) == ([], None)


def test_a_listing_that_changes_between_pages_skips_and_repeats_nothing_that_stayed():
    first, cursor = page_of(["a", "b", "c", "d", "e"], str, None, 2)
    assert first == ["a", "b"]
    # b (the last of the first page) went, and an item came before it and after it.
    rest, cursor = page_of(["a", "aa", "c", "cc", "d", "e"], str, cursor, 10)
    assert rest == ["c", "cc", "d", "e"]
    assert cursor is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"v0:a").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "A" * (MAX_CURSOR_CHARS + 1),
    ],
)
def test_a_cursor_that_is_not_one_of_ours_is_refused(cursor):
    with pytest.raises(MCPError) as caught:
        page_of(["a"], str, cursor, 1)
    assert caught.value.code == types.INVALID_PARAMS
