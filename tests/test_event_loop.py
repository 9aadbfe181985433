"""vedette runs on uvloop where it is installed and on asyncio's own loop where not."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from vedette import event_loop


async def _running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_the_loop_it_names() -> None:
    module = event_loop.run(_running_loop_module())
    assert module.split(".")[0] == event_loop.loop_name()


def test_without_uvloop_asyncio_runs_it() -> None:
    # uvloop hidden from imports, as in a plain `pip install vedette`.
    program = (
        "import sys; sys.modules['uvloop'] = None\n"
        "import asyncio\n"
        "from vedette import event_loop\n"
        "async def main(): return type(asyncio.get_running_loop()).__module__\n"
        "print(event_loop.loop_name(), event_loop.run(main()))\n"
    )
    answer = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["asyncio", "asyncio.unix_events"]
