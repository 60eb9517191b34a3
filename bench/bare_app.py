"""The baseline for bench/ingest.py: a bare Starlette app that only parses the form body."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backend.formdata import parse_form


async def webhook(request: Request) -> JSONResponse:
    form = parse_form(await request.body())
    return JSONResponse({"accepted": len(form.get("leads", {}).get("status", []))})


app = Starlette(routes=[Route("/webhooks/kommo/{hook_key}", webhook, methods=["POST"])])
