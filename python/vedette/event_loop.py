"""The event loop vedette runs on: uvloop when it is installed (the ``fast``
extra, ``pip install 'vedette[fast]'``), asyncio's own loop otherwise.

uvloop is optional because it weighs 13.9 MB installed, more than half of a
plain install (docs/operations.md, "What an installation weighs"); with it a
node serves about a tenth more requests on the same CPU (bench/RESULTS.md,
"The event loop").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")


def _uvloop() -> ModuleType | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the loop :func:`run` uses here."""
    return "asyncio" if _uvloop() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main`` to completion on the loop :func:`loop_name` names."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result
