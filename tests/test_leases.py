"""A worker restarted after kill -9 takes over the dead worker's jobs at once, not after the lease."""

import subprocess
import sys

from sqlalchemy import update
from sqlmodel import select

from backend import jobs, leases
from backend.models import Job
from tests.polling import eventually
from tests.test_worker import accounts, enqueue, run_worker, spec  # noqa: F401 (fixtures)


def a_dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


async def hold(resources, holders: dict[int, str]) -> None:
    """Jobs claimed by the given workers, leases still an hour long."""
    async with resources.sessions() as session, session.begin():
        claimed = await jobs.claim(session, worker_id="tmp", limit=10)
        assert sorted(job.account_id for job in claimed) == sorted(holders)
        for job in claimed:
            await session.exec(update(Job).where(Job.id == job.id)
                               .values(claimed_by=holders[job.account_id]))


async def test_a_dead_worker_of_this_machine_is_taken_over_at_once(resources, accounts, run_worker):  # noqa: F811
    host = leases.this_host()
    dead, alive, elsewhere = (f"{host}-{a_dead_pid()}-abc", f"{host}-1-abc",  # pid 1 always runs
                              f"other-machine-{a_dead_pid()}-abc")
    await enqueue(resources, spec(1, 1), spec(2, 1), spec(3, 1))
    await hold(resources, {1: dead, 2: alive, 3: elsewhere})
    ran = []

    async def probe(resources, job):
        ran.append(job.account_id)

    await run_worker({"probe": probe}, concurrency=4)
    await eventually(lambda: ran == [1], message="the dead worker's job was not run")
    async with resources.sessions() as session:
        rows = {r.account_id: r for r in (await session.exec(select(Job))).all()}
    assert rows[1].state == "done" and rows[1].attempts == 2
    # a live pid and another machine's worker keep their jobs until their leases run out
    assert (rows[2].state, rows[2].claimed_by, rows[3].state) == ("running", alive, "running")
