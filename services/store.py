"""PostgreSQL event recorder that also stores idempotency claims in the events' transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from domain.idempotency import IdempotencyClaim, IdempotencyRecord

RECORDER_TOPIC = "services.store:PostgresPearlRecorder"
INSERT_CHUNK = 1000


class PostgresPearlRecorder(PostgresApplicationRecorder):
    """Application recorder whose `insert_events` also writes the command's idempotency claim.

    The claim row is inserted before the events and given the position of the command's last
    event after them, all in one transaction: a duplicate key rolls back the events too, so a
    command is recorded exactly once.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.claims_table = events_table_name.removesuffix("_events") + "_idempotency"
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.claims_table)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "org text NOT NULL, key text NOT NULL, request_hash text NOT NULL, "
                "response jsonb NOT NULL, position bigint, "
                "created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (org, key))"
            ).format(table)
        )
        self._insert_claim = SQL(
            "INSERT INTO {0} (org, key, request_hash, response) VALUES (%s, %s, %s, %s)"
        ).format(table)
        self._set_claim_position = SQL(
            "UPDATE {0} SET position = %s WHERE org = %s AND key = %s"
        ).format(table)
        self._select_many = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {0}.{1}"
            " WHERE originator_id = ANY(%s) AND notification_id <= %s"
            " ORDER BY originator_id, originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._select_claim = SQL(
            "SELECT request_hash, response, position FROM {0} WHERE org = %s AND key = %s"
        ).format(table)

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the claim and the events in one transaction, in statements of bounded size.

        The library pipelines one statement carrying every event; with thousands of events in
        one save (a scan report) that pipeline stalls, so large saves are chunked instead.
        """
        claim: IdempotencyClaim | None = kwargs.get("idempotency")
        ids: list[int] = []
        with (
            self.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            if claim is not None:
                curs.execute(
                    self._insert_claim,
                    (claim.org, claim.key, claim.request_hash, Jsonb(claim.response)),
                    prepare=True,
                )
            if stored_events:
                self._lock_table(curs)
                self._notify_channel(curs)
                for start in range(0, len(stored_events), INSERT_CHUNK):
                    ids.extend(
                        self._insert_chunk(curs, stored_events[start : start + INSERT_CHUNK])
                    )
            if claim is not None and ids:
                curs.execute(self._set_claim_position, (max(ids), claim.org, claim.key))
        return ids

    def _insert_chunk(self, curs: Cursor[DictRow], chunk: Sequence[StoredEvent]) -> list[int]:
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in chunk
        ]
        curs.execute(self.insert_events_statement, (rows,))
        return [row["notification_id"] for row in curs.fetchall()]

    def select_events_for(
        self, originator_ids: Sequence[UUID], upto: int | None = None
    ) -> list[StoredEvent]:
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            limit = upto if upto is not None else 2**62
            curs.execute(self._select_many, (list(originator_ids), limit), prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]

    def find_idempotency(self, org: str, key: str) -> IdempotencyRecord | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_claim, (org, key), prepare=True)
            row = curs.fetchone()
        if row is None:
            return None
        position = row["position"]
        if position is None:
            position = self.max_notification_id() or 0
        return IdempotencyRecord(row["request_hash"], row["response"], position)
