"""Raw scanner reports: spooled to disk while hashed, kept in the JetStream object store."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from nats.js import JetStreamContext
from nats.js.api import ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, ObjectNotFoundError

from contracts.subjects import Subjects
from domain.authz import Principal
from domain.errors import InvalidInput, PayloadTooLarge, ReportError
from domain.ingest import ScanMeta
from domain.kernel import CommandResult, command_idempotency
from domain.pearl_app import PearlApp
from domain.scanners import ReportStream, stream_report

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Spooled:
    path: Path
    digest: str
    size: int


@contextlib.asynccontextmanager
async def spool(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[Spooled]:
    """Write an upload to a temporary file, hashing it; refuse it past `limit` bytes."""
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(prefix="pearl-report-", suffix=".json") as tmp:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"report is larger than the limit of {limit} bytes")
            digest.update(chunk)
            tmp.write(chunk)
        tmp.flush()
        if size == 0:
            raise ReportError("the report is empty (0 bytes)")
        yield Spooled(Path(tmp.name), digest.hexdigest(), size)


@contextlib.contextmanager
def spool_bytes(data: bytes) -> Iterator[Spooled]:
    with tempfile.NamedTemporaryFile(prefix="pearl-report-", suffix=".json") as tmp:
        tmp.write(data)
        tmp.flush()
        yield Spooled(Path(tmp.name), hashlib.sha256(data).hexdigest(), len(data))


def parse_file(path: Path, tool: str | None) -> ReportStream:
    """Validate the whole report, spilling its findings to disk: memory stays flat in its size.

    The caller closes the stream (it owns an anonymous spill file until then).
    """
    with path.open("rb") as fh:
        return stream_report(fh, tool, spill_dir=str(path.parent))


def meta_for(
    spooled: Spooled, target: str, branch: str, full: bool, commit: str | None = None
) -> ScanMeta:
    return ScanMeta(
        digest=spooled.digest,
        size=spooled.size,
        target=target,
        branch=branch,
        full=full,
        commit=commit,
    )


@dataclass(frozen=True, slots=True)
class ScanUpload:
    """Where a submitted report belongs: its scope, its commit, and the caller's options."""

    project_id: UUID
    tool: str | None = None
    target: str = "default"
    branch: str = "main"
    full: bool = True
    commit: str | None = None
    idempotency_key: str | None = None


async def submit_upload(
    app: PearlApp,
    store: ReportStore | None,
    principal: Principal,
    upload: ScanUpload,
    chunks: AsyncIterator[bytes],
    limit: int,
) -> CommandResult:
    """Authorize, spool, keep, parse and ingest one uploaded report (HTTP and MCP alike)."""
    await asyncio.to_thread(app.authorize_scan, principal, upload.project_id)
    async with spool(chunks, limit) as spooled:
        report = await asyncio.to_thread(parse_file, spooled.path, upload.tool)
        try:
            if store is not None:
                await store.put(spooled)
            meta = meta_for(spooled, upload.target, upload.branch, upload.full, upload.commit)
            idem = command_idempotency(
                upload.idempotency_key, "submitScan", upload.project_id, meta
            )
            return await asyncio.to_thread(
                app.submit_scan, principal, upload.project_id, report, meta, idem
            )
        finally:
            report.close()


#: the longest a report's upload to or download from the object store may take
REPORT_IO_TIMEOUT_S = 300.0


class ReportStore:
    """Content-addressed raw reports in the `<root>-reports` object store bucket."""

    def __init__(self, js: JetStreamContext, subjects: Subjects) -> None:
        self.js = js
        self.bucket = subjects.reports_bucket

    async def ensure(self) -> None:
        try:
            await self.js.object_store(self.bucket)
        except BucketNotFoundError:
            await self.js.create_object_store(
                self.bucket,
                config=ObjectStoreConfig(
                    bucket=self.bucket,
                    storage=StorageType.FILE,
                    description="raw scanner reports by SHA-256",
                ),
            )

    async def put(self, spooled: Spooled) -> None:
        store = await self.js.object_store(self.bucket)
        with contextlib.suppress(ObjectNotFoundError):
            info = await store.get_info(spooled.digest)
            if info.size == spooled.size:
                return
        with spooled.path.open("rb") as fh:
            async with asyncio.timeout(REPORT_IO_TIMEOUT_S):  # a lost connection never answers
                await store.put(spooled.digest, fh)

    @contextlib.asynccontextmanager
    async def fetch(self, name: str) -> AsyncIterator[Spooled]:
        """Download a stored report to a temporary file and check it against its name."""
        store = await self.js.object_store(self.bucket)
        with tempfile.NamedTemporaryFile(prefix="pearl-report-") as tmp:
            try:
                async with asyncio.timeout(REPORT_IO_TIMEOUT_S):  # chunks that never come
                    await store.get(name, writeinto=tmp)  # type: ignore[arg-type]
            except ObjectNotFoundError:
                raise InvalidInput(f"no report {name!r} in bucket {self.bucket!r}") from None
            tmp.flush()
            path = Path(tmp.name)
            digest, size = await asyncio.to_thread(_sha256_file, path)
            if digest != name:
                raise InvalidInput(f"report {name!r} does not match its SHA-256 ({digest})")
            yield Spooled(path, digest, size)


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
