"""Operations endpoints: liveness, readiness (database + migrations at head), Prometheus text."""

from __future__ import annotations

import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from backend import jobs, migrations
from backend import metrics as app_metrics
from backend.models import JobState

log = logging.getLogger("mailsync.health")


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    engine = request.app.state.resources.engine
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
    await _refresh_queue_gauges(request)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _refresh_queue_gauges(request: Request) -> None:
    """Queue gauges are read from the database at scrape time: they are the deployment's, not
    this process's."""
    try:
        async with request.app.state.resources.sessions() as session:
            counts = await jobs.counts_by_state(session)
            age = await jobs.oldest_pending_age(session)
    except (SQLAlchemyError, OSError):
        return
    for state in (JobState.PENDING, JobState.RUNNING, JobState.DONE, JobState.DEAD):
        app_metrics.JOBS.labels(state).set(counts.get(state, 0))
    app_metrics.QUEUE_AGE.set(age)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
