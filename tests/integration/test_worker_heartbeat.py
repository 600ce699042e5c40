"""A command that takes longer than the ack wait is not redelivered meanwhile: the worker sends
in-progress heartbeats while it runs (so the ack wait can be short)."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from contracts.subjects import Subjects
from services import worker
from services.worker import ACK, CommandProcessor, Outcome
from tests.support.helpers import eventually
from tests.support.infra import Servers, unique_name

pytestmark = pytest.mark.integration


class SlowProcessor(CommandProcessor):
    """Takes `seconds` per command and counts how often it was asked."""

    def __init__(self, seconds: float) -> None:
        super().__init__(None, None, Subjects(root="x"), authenticate=lambda _: None)  # type: ignore[arg-type,return-value]
        self.seconds = seconds
        self.calls = 0

    async def handle(self, subject: str, body: bytes, headers: dict[str, str]) -> Outcome:
        self.calls += 1
        await asyncio.sleep(self.seconds)
        return ACK


async def test_a_command_longer_than_the_ack_wait_is_not_redelivered_while_it_runs(
    infra: Servers, monkeypatch: pytest.MonkeyPatch
):
    ack_wait = 1.0
    monkeypatch.setattr(worker, "ACK_WAIT_S", ack_wait)  # heartbeats every ack_wait / 3
    stream, subject = unique_name("HB"), unique_name("hb")
    nc = await nats.connect(infra.nats)
    js = nc.jetstream()
    try:
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
        config = ConsumerConfig(
            durable_name="w", ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=5
        )
        sub = await js.pull_subscribe(f"{subject}.>", durable="w", stream=stream, config=config)
        other = await js.pull_subscribe(f"{subject}.>", durable="w", stream=stream)
        await js.publish(f"{subject}.cmd", b"{}")
        (msg,) = await sub.fetch(1, timeout=5)
        processor = SlowProcessor(seconds=4 * ack_wait)

        async def redelivered_meanwhile() -> list[Any]:
            try:
                return await other.fetch(1, timeout=3.5 * ack_wait)
            except nats.errors.TimeoutError:
                return []

        processing = asyncio.create_task(processor.process(msg))
        stolen = await redelivered_meanwhile()
        await processing

        assert stolen == []
        assert processor.calls == 1

        async def acked() -> bool:  # an ack is fire-and-forget: the server sees it shortly
            return (await js.consumer_info(stream, "w")).num_ack_pending == 0

        await eventually(acked, timeout=5)
        assert (await js.consumer_info(stream, "w")).num_redelivered == 0
    finally:
        await js.delete_stream(stream)
        await nc.close()
