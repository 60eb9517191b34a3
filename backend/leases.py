"""Leases held by workers of this machine that are gone.

A worker killed with `kill -9` keeps its jobs' leases until they run out (`jobs.LEASE`, 2 min):
its account waits that long. A worker id is `{hostname}-{pid}-{random}`, so a worker starting on
the same machine can tell which of them are dead — no process with that pid — and put their jobs
back at once. Workers of other machines, and live pids (even if the pid was reused), are left to
their leases: nothing is ever taken from a worker that may be running.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from backend.jobs import CLAIMED
from backend.models import Job, utcnow


def this_host() -> str:
    return socket.gethostname()[:32]


def _pid_gone(worker_id: str, host: str) -> bool:
    rest = worker_id[len(host) + 1:] if worker_id.startswith(f"{host}-") else ""
    pid = rest.split("-", 1)[0]
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


async def expire_dead_neighbours(session: AsyncSession) -> int:
    """End the leases of this machine's dead workers now; `jobs.release_expired_leases` then puts
    their jobs back. Returns how many jobs they held."""
    host = this_host()
    holders = (await session.exec(select(Job.claimed_by).where(
        col(Job.state).in_(CLAIMED), col(Job.claimed_by).startswith(f"{host}-")).distinct())).all()
    dead = [h for h in holders if h and _pid_gone(h, host)]
    if not dead:
        return 0
    result = await session.exec(update(Job).where(
        col(Job.state).in_(CLAIMED), col(Job.claimed_by).in_(dead)).values(lease_until=utcnow())
        .execution_options(synchronize_session=False))
    return result.rowcount
