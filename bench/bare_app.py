"""The anchor for the HTTP benchmark: a bare Starlette endpoint that parses the
same JSON body vedette parses and returns it, served by the same uvicorn."""

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def tool(request: Request) -> JSONResponse:
    return JSONResponse(json.loads(await request.body()))


app = Starlette(routes=[Route("/v1/tool", tool, methods=["POST"])])
