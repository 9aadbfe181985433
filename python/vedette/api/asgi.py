"""An ASGI app factory for servers that import the app in a worker process
(granian): the worker rebuilds the configuration `vedette serve` resolved."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import ASGIApp

from vedette.api.app import create_app

SPEC_VARIABLE = "VEDETTE_SERVE_SPEC"


def app_from_environment() -> ASGIApp:
    from vedette.serve import ServeSpec, build_runtime

    spec = ServeSpec(**json.loads(os.environ[SPEC_VARIABLE]))
    config, _ = spec.resolve()
    runtime = build_runtime(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        runtime.close()

    return create_app(runtime, lifespan=lifespan)
