"""Operations endpoints: liveness, readiness (database + migrations at head), Prometheus text."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import migrations

log = logging.getLogger("mailsync.health")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.services.engine
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        current, head = await migrations.current_and_head(engine)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        return _not_ready("database_unreachable", "the database does not answer")
    if current != head:
        return _not_ready("migrations_pending",
                          f"database is at {current or 'no revision'}, code expects {head}; "
                          "run `mailsync migrate`")
    return JSONResponse({"status": "ready", "database": "ok", "migration": current})


def _not_ready(code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=503)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
