"""The job worker: claim → run → retry with backoff → dead-letter.

The durable pipeline (queue, handlers) arrives with the pipeline issue; until then the worker
only idles until it is told to stop, so the Procfile's process types already run.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("mailsync.worker")


async def run_worker(stop: asyncio.Event, *, concurrency: int) -> None:
    log.info("worker started (concurrency %d); no job kinds are registered yet", concurrency)
    await stop.wait()
    log.info("worker stopped")
