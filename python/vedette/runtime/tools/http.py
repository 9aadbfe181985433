"""Config-declared HTTP tools: POST the arguments as JSON, return the JSON reply."""

from __future__ import annotations

import json
from typing import Any

import httpx

from vedette.config import HttpToolConfig
from vedette.runtime.tools.base import ToolFailed


class HttpTool:
    def __init__(self, config: HttpToolConfig) -> None:
        self.name = config.name
        self._config = config

    async def run(self, args: dict[str, Any]) -> Any:
        limit = self._config.max_response_bytes
        timeout = httpx.Timeout(self._config.timeout_s)
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", self._config.url, json=args) as response,
            ):
                if response.status_code // 100 != 2:
                    raise ToolFailed("error", f"tool endpoint answered HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise ToolFailed(
                            "output_too_large",
                            f"tool endpoint sent over the {limit}-byte response limit",
                        )
        except httpx.TimeoutException as err:
            raise ToolFailed("timeout", f"tool endpoint timed out: {err}") from err
        except httpx.HTTPError as err:
            raise ToolFailed("error", f"tool endpoint unreachable: {err}") from err
        try:
            return json.loads(body)
        except ValueError as err:
            raise ToolFailed("bad_output", f"tool endpoint sent non-JSON: {err}") from err
