"""The scheduler's timing and leadership rules, with a fake lease and a fake monotonic clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from services.scheduler import Job, Scheduler, due


class FakeLease:
    """Held or not as the test says; counts what the scheduler asked of it."""

    owner = "fake"
    renew_every = 0.01

    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.held = False
        self.renewals = 0
        self.released = False

    async def acquire(self) -> bool:
        self.held = self.free
        return self.held

    async def renew(self) -> bool:
        self.renewals += 1
        return self.held

    async def release(self) -> None:
        self.released = True
        self.held = False


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(issued: int = 1) -> tuple[list[int], Callable[[], Awaitable[int]]]:
    calls: list[int] = []

    async def fn() -> int:
        calls.append(1)
        return issued

    return calls, fn


def scheduler(lease: FakeLease, jobs: list[Job], clock: Clock) -> Scheduler:
    return Scheduler(None, None, lease, jobs, 0.01, monotonic=clock)  # type: ignore[arg-type]


def test_a_job_is_due_when_never_run_or_its_interval_has_elapsed() -> None:
    jobs = [Job("a", 10, counting()[1]), Job("b", 60, counting()[1]), Job("c", 5, counting()[1])]

    names = [job.name for job in due(jobs, {"a": 100.0, "b": 100.0}, 110.0)]

    assert names == ["a", "c"]


async def test_the_leader_runs_every_job_at_once_then_each_at_its_interval() -> None:
    clock = Clock()
    fast_calls, fast = counting(3)
    slow_calls, slow = counting(0)
    sched = scheduler(FakeLease(), [Job("fast", 10, fast), Job("slow", 60, slow)], clock)

    first = await sched.tick()
    clock.now += 9
    early = await sched.tick()
    clock.now += 1
    later = await sched.tick()

    assert first == {"fast": 3, "slow": 0}
    assert early == {}
    assert later == {"fast": 3}
    assert (len(fast_calls), len(slow_calls)) == (2, 1)


async def test_nothing_runs_without_the_lease() -> None:
    calls, fn = counting()
    sched = scheduler(FakeLease(free=False), [Job("a", 1, fn)], Clock())

    assert await sched.tick() == {}
    assert calls == []


async def test_the_holder_renews_the_lease_on_each_tick() -> None:
    lease = FakeLease()
    sched = scheduler(lease, [], Clock())

    await sched.tick()
    await sched.tick()

    assert lease.renewals == 1


async def test_a_failing_job_does_not_stop_the_others_and_is_retried_next_tick() -> None:
    calls, ok = counting()
    attempts: list[int] = []

    async def broken() -> int:
        attempts.append(1)
        raise RuntimeError("store unavailable")

    sched = scheduler(FakeLease(), [Job("broken", 60, broken), Job("ok", 60, ok)], Clock())

    assert await sched.tick() == {"ok": 1}
    assert await sched.tick() == {}
    assert (len(attempts), len(calls)) == (2, 1)


async def test_a_new_term_of_leadership_runs_every_job_at_once() -> None:
    clock = Clock()
    lease = FakeLease()
    calls, fn = counting()
    sched = scheduler(lease, [Job("a", 3600, fn)], clock)
    await sched.tick()

    lease.held, lease.free = False, False
    await sched.tick()
    lease.free = True
    clock.now += 1
    again = await sched.tick()

    assert again == {"a": 1} and len(calls) == 2


def test_job_names_must_be_unique() -> None:
    fn = counting()[1]
    with pytest.raises(ValueError, match="unique"):
        scheduler(FakeLease(), [Job("a", 1, fn), Job("a", 2, fn)], Clock())


async def test_run_releases_the_lease_when_stopped() -> None:
    lease = FakeLease()
    calls, fn = counting()
    sched = scheduler(lease, [Job("a", 3600, fn)], Clock())
    stop = asyncio.Event()

    task = asyncio.create_task(sched.run(stop))
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)

    assert lease.released and len(calls) == 1 and lease.renewals >= 1
