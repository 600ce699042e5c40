"""The notification log read in large pages straight from PostgreSQL and decoded fast.

Replays (rebuild, audit verification and export, checkpoint signing) read every stored event;
the library's `select_notifications` + mapper cost more than the replay itself. Here one query
per page returns plain rows (binary: the state without hex decoding) and `domain.stored_decoder`
decodes them; any other recorder (in-memory in unit tests) goes through the library.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg import Cursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composed, Identifier

from contracts.envelope import EventEnvelope
from domain.stored_decoder import EnvelopeDecoder

if TYPE_CHECKING:
    from domain.pearl_app import PearlApp

PAGE = 10_000
T = TypeVar("T")


class Page(list[EventEnvelope]):
    """Envelopes in store order. `json_native`: no `data` in it holds a float or anything but
    strings, integers, booleans, nulls, lists and dicts (`projections.audit.canonical_json`)."""

    json_native = False


class EventLog:
    """Pages of envelopes from one application's event store, in store order."""

    def __init__(self, app: PearlApp) -> None:
        self.app = app
        self.decoder = EnvelopeDecoder(app.mapper)

    def read(
        self, after: int, limit: int, upto: int | None = None, topics: Sequence[str] = ()
    ) -> Page:
        """Up to `limit` envelopes after position `after` (and at most `upto`)."""
        recorder = self.app.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            table = (recorder.datastore.schema, recorder.events_table_name)
            with (
                recorder.datastore.get_connection() as conn,
                conn.cursor(row_factory=tuple_row, binary=True) as cur,
            ):
                return read_page(cur, table, self.decoder, after, limit, upto, topics)
        notes = recorder.select_notifications(after + 1, limit, stop=upto, topics=topics)
        rows = [(n.id, n.originator_id, n.originator_version, n.topic, n.state) for n in notes]
        return decode_page(self.decoder, rows)

    def pages(
        self, upto: int | None = None, topics: Sequence[str] = (), page: int = PAGE
    ) -> Iterator[Page]:
        """Every stored event (up to `upto`) in pages, oldest first, the next one read while
        the caller works on one (bounded memory)."""
        return read_ahead(self._pages(upto, topics, page))

    def _pages(self, upto: int | None, topics: Sequence[str], page: int) -> Iterator[Page]:
        after = 0
        while envelopes := self.read(after, page, upto, topics):
            yield envelopes
            after = envelopes[-1].position


def read_page(
    cur: Cursor[Any],
    table: tuple[str, str],
    decoder: EnvelopeDecoder,
    after: int,
    limit: int,
    upto: int | None = None,
    topics: Sequence[str] = (),
) -> Page:
    """One page of the events table `(schema, name)` through a binary tuple-row cursor."""
    statement, params = _page_query(table, after, limit, upto, topics)
    return decode_page(decoder, cur.execute(statement, params, prepare=True).fetchall())


def decode_page(decoder: EnvelopeDecoder, rows: list[Any]) -> Page:
    """Rows of (position, originator id, version, topic, state) as a page of envelopes."""
    unsure = decoder.unsure
    page = Page(decoder.envelope(*row) for row in rows)
    page.json_native = decoder.unsure == unsure
    return page


class Prefetch:
    """`read(after, limit)` that reads the page after the one it returns in a thread meanwhile,
    so decoding overlaps with whatever the caller does with the page (waiting on PostgreSQL)."""

    def __init__(self, read: Callable[[int, int], Page]) -> None:
        self.read = read
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="pearl-prefetch")
        self.next: tuple[int, int, Future[Page]] | None = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)

    def __call__(self, after: int, limit: int) -> Page:
        ahead, self.next = self.next, None
        if ahead is not None and ahead[:2] == (after, limit):
            page = ahead[2].result()
        else:
            page = self.read(after, limit)
        if len(page) == limit:
            position = page[-1].position
            self.next = (position, limit, self.executor.submit(self.read, position, limit))
        return page


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The same items, the next one produced in a thread while the caller uses this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="pearl-read-ahead") as executor:
        done = object()
        ahead = executor.submit(next, items, done)
        while (item := ahead.result()) is not done:
            ahead = executor.submit(next, items, done)
            yield item  # type: ignore[misc]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a replay allocates millions of small dicts (no
    cycles, freed by reference counting), and each collection would scan every live object."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _page_query(
    table: tuple[str, str], after: int, limit: int, upto: int | None, topics: Sequence[str]
) -> tuple[Composed, list[Any]]:
    statement = SQL(
        "SELECT notification_id, originator_id::text, originator_version, topic, state"
        " FROM {}.{} WHERE notification_id > %s"
    ).format(Identifier(table[0]), Identifier(table[1]))
    params: list[Any] = [after]
    if upto is not None:
        statement += SQL(" AND notification_id <= %s")
        params.append(upto)
    if topics:
        statement += SQL(" AND topic = ANY(%s)")
        params.append(list(topics))
    statement += SQL(" ORDER BY notification_id LIMIT %s")
    params.append(limit)
    return statement, params
