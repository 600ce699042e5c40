"""The AuditCheckpoint aggregate: a signed statement of an org's audit-chain head.

Checkpoints are events too, so they sit in the chain they anchor; `pearl audit verify` checks
every one against the recomputed chain and its Ed25519 signature.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


def checkpoint_id(org: str, seq: int) -> UUID:
    return stable_id("audit-checkpoint", org, str(seq))


class AuditCheckpoint(PearlAggregate):
    """The chain head (seq, hash) of one org, signed by the deployment's key."""

    @staticmethod
    def create_id(org: str, seq: int, **_: Any) -> UUID:
        return checkpoint_id(org, seq)

    @event("Signed")
    def __init__(
        self,
        org: str,
        seq: int,
        position: int,
        hash: str,
        public_key: str,
        signature: str,
        signed_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.seq = seq
        self.position = position
        self.hash = hash
        self.public_key = public_key
        self.signature = signature
        self.signed_at = signed_at
