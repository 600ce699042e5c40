"""The ReleaseVersion aggregate: a build of a project that may be promoted (commit, artifact).

Its digest binds approvals to exactly this build: a different commit or artifact is another
version, with other approvals. The author of the change is recorded for separation of duties.
"""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.base import PearlAggregate, stable_id


def release_version_id(project_id: str, release: str) -> UUID:
    return stable_id("release_version", project_id, release)


def version_digest(project_id: str, version: str, commit: str, artifact: str | None) -> str:
    parts = "\x1f".join((project_id, version, commit, artifact or ""))
    return "sha256:" + hashlib.sha256(parts.encode()).hexdigest()


class ReleaseVersion(PearlAggregate):
    @staticmethod
    def create_id(project_id: str, release: str, **_: Any) -> UUID:
        return release_version_id(project_id, release)

    @event("Registered")
    def __init__(
        self,
        org: str,
        project_id: str,
        release: str,
        commit: str,
        artifact_digest: str | None,
        digest: str,
        author: str | None,
        registered_at: str,
        actor: str,
    ) -> None:
        self.org = org
        self.project_id = project_id
        self.release = release
        self.commit = commit
        self.artifact_digest = artifact_digest
        self.digest = digest
        self.author = author
        self.registered_at = registered_at

    def same_build(self, commit: str, artifact_digest: str | None, author: str | None) -> bool:
        return (self.commit, self.artifact_digest, self.author) == (
            commit,
            artifact_digest,
            author,
        )
