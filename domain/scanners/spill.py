"""Where a report's per-finding records wait between the parsing pass and their use.

A big report must not be held in memory, so its records go to a spill file: an anonymous
temporary file (unlinked on creation, so no path ever appears and nothing can be left behind),
written as length-prefixed msgpack batches and read back with positioned reads (a batch holding
an integer msgpack cannot carry, beyond 64 bits, is pickled instead: the file is private to
this process, which wrote every byte of it). Reading never
moves a shared file position, so several readers may walk the same spill concurrently.
Small reports keep their records in a plain list behind the same interface.
"""

from __future__ import annotations

import os
import pickle
import struct
import tempfile
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

import msgspec

T = TypeVar("T")
_BATCH = 1024
_HEADER = struct.Struct("<IB")
_MSGPACK, _PICKLE = 0, 1


class Store(Protocol[T]):
    """Records appended in order during one pass, then read back (possibly several times)."""

    def append(self, record: T, /) -> None:
        """Add a record after the ones already stored."""

    def __iter__(self) -> Iterator[T]:
        """Yield every stored record in the order it was appended."""

    def drain(self) -> Iterator[T]:
        """Yield every record once, in order, releasing each as soon as it has been yielded."""

    def close(self) -> None:
        """Release the records (a spill file is closed, which frees its disk space)."""


class MemoryStore(Generic[T]):
    """A Store kept in memory, for reports parsed whole."""

    def __init__(self) -> None:
        self._records: list[T | None] = []

    def append(self, record: T, /) -> None:
        """Add a record after the ones already stored."""
        self._records.append(record)

    def __iter__(self) -> Iterator[T]:
        """Yield every stored record in the order it was appended."""
        return (record for record in self._records if record is not None)

    def drain(self) -> Iterator[T]:
        """Yield every record once, in order, dropping each from the list as it goes."""
        records = self._records
        for index, record in enumerate(records):
            records[index] = None
            if record is not None:
                yield record
        records.clear()

    def close(self) -> None:
        """Drop the records."""
        self._records.clear()


class SpillFile(Generic[T]):
    """A Store on disk: msgpack batches in an anonymous temporary file."""

    def __init__(self, record: type[T], directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder(list[record])  # type: ignore[valid-type]
        self._pending: list[T] = []
        self._size = 0
        self.count = 0

    def append(self, record: T, /) -> None:
        """Buffer a record; every _BATCH records go to the file as one msgpack message."""
        self._pending.append(record)
        self.count += 1
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Write the buffered records (the file is complete once this returns)."""
        if not self._pending:
            return
        try:
            kind, payload = _MSGPACK, self._encoder.encode(self._pending)
        except OverflowError:
            kind, payload = _PICKLE, pickle.dumps(self._pending, pickle.HIGHEST_PROTOCOL)
        self._file.write(_HEADER.pack(len(payload), kind))
        self._file.write(payload)
        self._file.flush()
        self._size += _HEADER.size + len(payload)
        self._pending.clear()

    def batches(self) -> Iterator[list[T]]:
        """Yield the stored records batch by batch, in order, without moving any file position."""
        self.flush()
        descriptor, size, offset = self._file.fileno(), self._size, 0
        while offset < size:
            length, kind = _HEADER.unpack(_read(descriptor, _HEADER.size, offset))
            offset += _HEADER.size
            payload = _read(descriptor, length, offset)
            offset += length
            if kind == _PICKLE:
                batch: list[T] = pickle.loads(payload)  # noqa: S301 - written by this process
                yield batch
            else:
                yield self._decoder.decode(payload)

    def __iter__(self) -> Iterator[T]:
        """Yield every stored record in the order it was appended."""
        for batch in self.batches():
            yield from batch

    def drain(self) -> Iterator[T]:
        """Yield every record once, in order, then delete the spill file."""
        yield from self
        self.close()

    @property
    def closed(self) -> bool:
        """Return True once close() released the file."""
        return self._file.closed

    def close(self) -> None:
        """Close (and thereby delete) the spill file; idempotent."""
        self._pending.clear()
        self._file.close()

    def __enter__(self) -> SpillFile[T]:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _read(descriptor: int, length: int, offset: int) -> bytes:
    """Read exactly `length` bytes at `offset` (pread may return short reads)."""
    parts: list[bytes] = []
    while length:
        part = os.pread(descriptor, length, offset)
        if not part:
            raise OSError("the spill file ended early")
        parts.append(part)
        length -= len(part)
        offset += len(part)
    return b"".join(parts)
