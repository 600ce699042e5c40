"""PostgreSQL event recorder that also stores idempotency claims in the events' transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from domain.idempotency import IdempotencyClaim, IdempotencyRecord

RECORDER_TOPIC = "services.store:PostgresPearlRecorder"


class PostgresPearlRecorder(PostgresApplicationRecorder):
    """Application recorder whose `insert_events` also writes the command's idempotency claim.

    The claim row is inserted before the events and given the position of the command's last
    event after them, all in the library's one transaction: a duplicate key rolls back the events
    too, so a command is recorded exactly once.
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
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._select_claim = SQL(
            "SELECT request_hash, response, position FROM {0} WHERE org = %s AND key = %s"
        ).format(table)

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        claim: IdempotencyClaim | None = kwargs.get("idempotency")
        if claim is not None:
            curs.execute(
                self._insert_claim,
                (claim.org, claim.key, claim.request_hash, Jsonb(claim.response)),
                prepare=True,
            )
        super()._insert_events(curs, stored_events, **kwargs)

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        claim: IdempotencyClaim | None = kwargs.get("idempotency")
        if claim is not None and ids:
            curs.execute(self._set_claim_position, (max(ids), claim.org, claim.key), prepare=True)
        return ids

    def select_events_for(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_many, (list(originator_ids),), prepare=True)
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
