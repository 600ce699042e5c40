"""NATS connection and the JetStream streams PeaRL needs (created idempotently at start)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from contracts.subjects import Subjects

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 24 * 3600.0
#: the command worker: a command still failing at its MAX_DELIVER-th delivery is dead-lettered
WORKER_MAX_DELIVER = 10
#: deliveries the server allows beyond that (a worker killed while dead-lettering)
WORKER_SPARE_DELIVERIES = 2
#: JetStream redelivers a command this long after the last sign of life of its worker (who
#: sends one every third of it while the command runs)
WORKER_ACK_WAIT_S = 6.0


def stream_configs(subjects: Subjects, replicas: int = 1) -> list[StreamConfig]:
    """Events (the outbox's destination), commands (work queue) and the dead-letter stream,
    each with `replicas` copies (3 on a JetStream cluster)."""
    return [
        StreamConfig(
            name=subjects.events_stream,
            subjects=[subjects.all_events],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            discard=DiscardPolicy.OLD,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.commands_stream,
            subjects=[subjects.all_commands],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=600.0,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=subjects.dlq_stream,
            subjects=[subjects.all_dlq],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=30 * 24 * 3600.0,
            num_replicas=replicas,
        ),
    ]


def servers_of(url: str) -> list[str]:
    """`NATS_URL` may name several servers of a cluster, comma-separated."""
    return [part.strip() for part in url.split(",") if part.strip()]


#: How every PeaRL process connects: reconnect forever, every half second, and notice a dead
#: connection (no FIN, e.g. a network cut) after at most ~3 unanswered pings 5 s apart.
CONNECT_OPTIONS: dict[str, Any] = {
    "max_reconnect_attempts": -1,
    "reconnect_time_wait": 0.5,
    "connect_timeout": 5,
    "ping_interval": 5,
    "max_outstanding_pings": 3,
}


async def connect(url: str, name: str) -> Client:
    return await nats.connect(servers_of(url), name=name, **CONNECT_OPTIONS)


def worker_consumer(subjects: Subjects) -> ConsumerConfig:
    """The command worker's durable pull consumer: deliveries bounded, a short ack wait."""
    return ConsumerConfig(
        durable_name=f"{subjects.root}-worker",
        filter_subject=subjects.all_commands,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=WORKER_ACK_WAIT_S,
        max_deliver=WORKER_MAX_DELIVER + WORKER_SPARE_DELIVERIES,
        max_ack_pending=1000,
    )


async def ensure_streams(js: JetStreamContext, subjects: Subjects, replicas: int = 1) -> None:
    """Create or update PeaRL's streams and the worker's consumer; safe to run at every start
    (a consumer made by an older version gets the current ack wait and delivery bound)."""
    for config in stream_configs(subjects, replicas):
        try:
            await js.stream_info(config.name or "")
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream", extra={"stream": config.name})
    await js.add_consumer(subjects.commands_stream, worker_consumer(subjects))


async def delete_streams(js: JetStreamContext, subjects: Subjects) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_object_store(subjects.reports_bucket)
    for config in stream_configs(subjects):
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(config.name or "")
