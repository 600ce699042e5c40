"""The `pearl up` supervisor's schedule: per-process back-off on a fake clock, no waiting."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.supervisor import Backoff, State, Supervisor, Unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProcess:
    """Exits when told to; `start()` makes it run again (or raises, while `broken`)."""

    name: str
    code: int | None = None
    starts: int = 0
    broken: bool = False
    gate: threading.Event | None = None  # a start that blocks until the test lets it finish
    pids: list[int] = field(default_factory=lambda: [1000])

    def start(self) -> None:
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.broken:
            raise OSError(f"{self.name} cannot start")
        self.starts += 1
        self.code = None
        self.pids.append(self.pids[-1] + 1)

    def unit(self, *, blocking: bool = False) -> Unit:
        return Unit(
            self.name, self.start, lambda: self.code, lambda: self.pids[-1], blocking=blocking
        )


def supervise(*units: Unit, clock: Clock, backoff: Backoff | None = None) -> Supervisor:
    return Supervisor(list(units), backoff or Backoff(0.5, 4.0, 30.0), clock=clock)


def test_an_exited_process_restarts_after_its_back_off_and_not_before() -> None:
    clock, worker = Clock(), FakeProcess("worker")
    sup = supervise(worker.unit(), clock=clock)

    worker.code = -9
    sup.tick()
    clock.now += 0.4
    sup.tick()
    assert worker.starts == 0
    clock.now += 0.1
    sup.tick()

    assert worker.starts == 1
    assert sup.units[0].state is State.RUNNING
    assert sup.units[0].restarts == 1


def test_the_back_off_doubles_on_each_quick_exit_up_to_the_cap_then_resets_once_stable() -> None:
    clock, worker = Clock(), FakeProcess("worker")
    sup = supervise(worker.unit(), clock=clock)
    delays = []
    for _ in range(6):
        worker.code = 1
        sup.tick()
        delays.append(sup.units[0].next_start - clock.now)
        clock.now = sup.units[0].next_start
        sup.tick()
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]

    clock.now += 30.0  # stayed up long enough: healthy again
    worker.code = 1
    sup.tick()

    assert sup.units[0].next_start - clock.now == 0.5
    assert worker.starts == 6


def test_a_slow_start_of_one_server_does_not_delay_restarting_the_others() -> None:
    clock = Clock()
    gate = threading.Event()
    nats = FakeProcess("nats", gate=gate)
    worker = FakeProcess("worker")
    sup = supervise(nats.unit(blocking=True), worker.unit(), clock=clock)
    try:
        nats.code, worker.code = -9, -9
        sup.tick()
        clock.now += 0.5
        sup.tick()  # nats starts in a thread, blocked on the gate; the worker starts now

        assert sup.units[0].state is State.STARTING
        assert worker.starts == 1
        assert sup.units[1].state is State.RUNNING

        gate.set()
        sup.units[0].pending.result(5)  # type: ignore[union-attr]
        sup.tick()
        assert sup.units[0].state is State.RUNNING
        assert nats.starts == 1
    finally:
        gate.set()
        sup.close()


def test_a_start_that_fails_is_retried_with_a_longer_back_off() -> None:
    clock, api = Clock(), FakeProcess("api", broken=True)
    sup = supervise(api.unit(), clock=clock)

    api.code = 3
    sup.tick()
    clock.now += 0.5
    sup.tick()  # start raises: scheduled again, one step further
    assert sup.units[0].state is State.WAITING
    assert sup.units[0].next_start - clock.now == 1.0

    api.broken = False
    clock.now += 1.0
    sup.tick()
    assert api.starts == 1
    assert sup.units[0].state is State.RUNNING


def test_a_blocking_start_that_raises_is_retried() -> None:
    clock, pg = Clock(), FakeProcess("postgres", broken=True)
    sup = supervise(pg.unit(blocking=True), clock=clock)
    try:
        pg.code = -9
        sup.tick()
        clock.now += 0.5
        sup.tick()
        assert sup.units[0].pending is not None
        sup.units[0].pending.exception(5)
        sup.tick()
        assert sup.units[0].state is State.WAITING
        assert sup.units[0].failures == 2
    finally:
        sup.close()


def test_each_exit_and_restart_is_logged_with_name_code_count_and_delay(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    clock, worker = Clock(), FakeProcess("worker")
    sup = Supervisor([worker.unit()], Backoff(0.5, 4.0, 30.0), clock=clock, pid_dir=tmp_path)
    assert (tmp_path / "worker.pid").read_text() == "1000\n"

    with caplog.at_level(logging.INFO, logger="services.supervisor"):
        worker.code = -9
        sup.tick()
        clock.now += 0.5
        sup.tick()

    exited, restarted = caplog.records[-2:]
    assert vars(exited)["process_name"] == "worker"
    assert vars(exited)["exit_code"] == -9
    assert vars(exited)["backoff_s"] == 0.5
    assert vars(restarted)["process_name"] == "worker"
    assert vars(restarted)["restarts"] == 1
    assert vars(restarted)["down_s"] == 0.5
    assert (tmp_path / "worker.pid").read_text() == "1001\n"
    sup.close()
    assert not (tmp_path / "worker.pid").exists()
