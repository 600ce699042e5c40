"""The relay's publish is bounded: acks that never come fail the batch in `timeout` seconds and
give their pending-publish slots back; a batch is only counted once every ack is in."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from contracts.envelope import EventEnvelope
from contracts.subjects import Subjects
from domain.pearl_app import PearlApp
from services.relay import POSITION_HEADER, PublishError, Relay


class SilentJetStream:
    """`publish_async` returns futures this test resolves (or never does)."""

    def __init__(self, expect: int = 0) -> None:
        self.futures: list[asyncio.Future[Any]] = []
        self.headers: list[dict[str, str]] = []
        self.expect = expect
        self.all_sent = asyncio.Event()

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str], wait_stall: float
    ) -> asyncio.Future[Any]:
        assert wait_stall > 0  # a full pending window never blocks forever either
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.headers.append(headers)
        if len(self.futures) == self.expect:
            self.all_sent.set()
        return future


def envelope(position: int) -> EventEnvelope:
    return EventEnvelope(
        id=f"e{position}",
        source="t",
        type="pearl.finding.recorded.v2",
        subject="s",
        time="2024-01-01T00:00:00Z",
        org="acme",
        data={},
        position=position,
        aggregate="finding",
        aggregateid="a",
        aggregateversion=1,
        actor="tester",
    )


def relay(js: SilentJetStream, timeout: float) -> Relay:
    app = PearlApp(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return Relay(app, js, Subjects(), "postgresql://unused", timeout=timeout)  # type: ignore[arg-type]


async def test_a_batch_whose_acks_never_come_fails_within_the_timeout_and_frees_its_slots():
    js = SilentJetStream()
    r = relay(js, timeout=0.2)
    started = asyncio.get_running_loop().time()

    async with asyncio.timeout(10):  # bounded even if the relay were not
        with pytest.raises(PublishError):
            await r.publish([envelope(1), envelope(2), envelope(3)])

    assert asyncio.get_running_loop().time() - started < 2.0
    assert len(js.futures) == 3
    assert all(f.cancelled() for f in js.futures)  # nats-py releases a slot per done future
    assert r.position == 0  # nothing counted as published


async def test_a_batch_counts_only_when_every_ack_is_in_and_carries_positions_and_chain():
    js = SilentJetStream(expect=2)
    r = relay(js, timeout=5.0)
    r.position = 7
    publishing = asyncio.create_task(r.publish([envelope(8), envelope(9)]))
    await js.all_sent.wait()
    for future in js.futures:
        future.set_result(SimpleNamespace(duplicate=False))
    await publishing

    assert r.position == 9
    assert [h[POSITION_HEADER] for h in js.headers] == ["8", "9"]
    assert [h["Nats-Expected-Last-Msg-Id"] for h in js.headers] == ["pearl-7", "pearl-8"]


async def test_one_failed_ack_fails_the_batch_at_that_position():
    js = SilentJetStream(expect=2)
    r = relay(js, timeout=5.0)
    publishing = asyncio.create_task(r.publish([envelope(1), envelope(2)]))
    await js.all_sent.wait()
    js.futures[0].set_result(SimpleNamespace(duplicate=False))
    js.futures[1].set_exception(RuntimeError("wrong last msg id"))

    with pytest.raises(PublishError, match="position 2"):
        await publishing
    assert r.position == 1
