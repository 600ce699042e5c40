"""The readiness judgement: lag limits, stuck detection with a fake clock, failures named."""

from __future__ import annotations

from contracts.subjects import Subjects
from projections.status import CheckpointState, Failure, StoreStatus
from services.readiness import Readiness, Report
from services.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _readiness(clock: Clock) -> Readiness:
    settings = Settings(ready_max_relay_lag=10, ready_max_projection_lag=10, ready_stuck_seconds=5)
    return Readiness(settings, Subjects(root="t"), clock=clock)


def _judge(r: Readiness, head: int, checkpoint: int, relay: int, failure: Failure | None = None):
    report = Report(checks={"postgres": "ok", "nats": "ok"})
    state = CheckpointState("read_models", checkpoint, head - checkpoint, failure)
    r.judge(report, StoreStatus(head, [state]), relay)
    return report


def test_behind_but_moving_is_ready_and_stuck_after_the_threshold():
    clock = Clock()
    r = _readiness(clock)
    assert _judge(r, 20, 15, 18).ok
    clock.now += 4.9
    assert _judge(r, 21, 15, 18).ok  # not moved for 4.9 s: still within 5 s
    clock.now += 0.2
    report = _judge(r, 21, 15, 18)
    assert not report.ok
    assert report.checks["relay"].startswith("stuck: 3 events behind")
    assert report.checks["projections"].startswith("stuck: read_models is 6 events behind")
    clock.now += 1
    assert _judge(r, 21, 21, 21).ok  # both moved (and caught up): ready again


def test_caught_up_and_idle_is_never_stuck():
    clock = Clock()
    r = _readiness(clock)
    for _ in range(3):
        assert _judge(r, 7, 7, 7).ok
        clock.now += 60


def test_lag_beyond_the_limits_is_not_ready():
    r = _readiness(Clock())
    report = _judge(r, 100, 95, 89)
    assert report.checks["relay"] == "behind: 11 events (more than 10)"
    assert report.checks["projections"] == "ok"
    report = _judge(r, 100, 89, 95)
    assert report.checks["projections"] == "behind: read_models is 11 events behind (more than 10)"
    assert report.relay == {"position": 95, "lag": 5, "stalled_seconds": 0.0}


def test_a_recorded_failure_names_projection_position_and_error():
    failure = Failure("read_models", "findings", 42, "DataError: NUL", attempts=3)
    report = _judge(_readiness(Clock()), 50, 41, 50, failure)
    assert not report.ok
    assert report.checks["projections"] == (
        "failed: projection findings (read_models) failed at position 42: DataError: NUL"
    )
    assert report.projections["read_models"]["failure"]["position"] == 42
    assert report.body()["status"] == "not-ready"
