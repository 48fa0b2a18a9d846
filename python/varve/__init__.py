"""varve: an embedded, memory-mapped event log for event sourcing.

    import varve
    with varve.EventLog.open_or_create("/tmp/bank", durability="group") as log:
        r = log.append("account-1", [varve.EventData("Opened", b'{"owner":"ada"}', json=True)],
                       expected=varve.NO_STREAM)
        log.wait_durable(r.end)
        for e in log.read_stream("account-1"):
            print(e.version, e.type, e.data)

A log opened with a ``master_key`` (``varve.generate_master_key()``, or
``varve.load_master_key(path)``) seals every payload with its stream's own key;
``log.forget(stream)`` destroys that key: the stream's events then read back
with ``forgotten`` set and empty ``data`` (crypto-shredding).

One writer per directory (a second writing process gets ``LockedError``);
any number of readers, in this process or others (``EventLog.open_read_only``).
Appends may come from any thread of the writing process (they are serialised);
the GIL is released while varve waits or reads, so other threads run.
"""

from __future__ import annotations

import os as _os
import uuid as _uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from . import _varve
from .errors import (
    CancelledError,
    CorruptionError,
    Error,
    InvalidArgument,
    LockedError,
    NoSpaceError,
    NotFoundError,
    ReadOnlyError,
    RemovedError,
    StreamDeletedError,
    TooLargeError,
    WrongExpectedVersion,
    _BY_CODE,
)

_varve._set_error_classes(dict(_BY_CODE))

EventData = _varve.EventData
RecordedEvent = _varve.RecordedEvent
AppendResult = _varve.AppendResult
Reader = _varve.Reader
StreamReader = _varve.StreamReader

#: Expected versions: any version, the stream must not exist yet, it must exist.
#: An int ``n >= 0`` expects exactly version ``n`` (0: no stream yet).
ANY: int = _varve.ANY
NO_STREAM: int = _varve.NO_STREAM
STREAM_EXISTS: int = _varve.STREAM_EXISTS
#: ``read_stream(..., backward=True)`` from the newest event.
LATEST: int = _varve.LATEST
#: ``subscribe(END)``: only events committed after the subscription opens.
END: int = _varve.END

StreamId = str | bytes | int


def generate_master_key() -> bytes:
    """A fresh master key for crypto-shredding: 32 bytes from a CSPRNG. Keep it
    outside the log's directory: whoever holds both reads every stream."""
    return _varve.generate_master_key()


def load_master_key(path: str | _os.PathLike[str]) -> bytes:
    """Reads a key file: 64 hexadecimal digits and a newline (``varve keygen``
    writes one) or 32 raw bytes. ``NotFoundError`` for a missing file,
    ``InvalidArgument`` for anything else."""
    return _varve.load_master_key(_os.fspath(path))


__all__ = [
    "ANY", "NO_STREAM", "STREAM_EXISTS", "LATEST", "END",
    "EventLog", "EventData", "generate_master_key", "load_master_key", "RecordedEvent", "AppendResult", "Reader", "StreamReader",
    "Subscription", "Error", "WrongExpectedVersion", "CorruptionError", "NotFoundError",
    "InvalidArgument", "LockedError", "ReadOnlyError", "NoSpaceError", "TooLargeError",
    "CancelledError", "RemovedError", "StreamDeletedError",
]


class Subscription:
    """Follows the log from a position: history first, then live events,
    including those appended by another process. Iterating blocks until the
    next event (the GIL released); ``next(timeout)`` returns None when none
    came in time; ``cancel()`` (from any thread) ends the iteration."""

    def __init__(self, log: EventLog, impl: Any) -> None:
        self._log = log  # keeps the log open while the subscription lives
        self._impl = impl

    def __iter__(self) -> Iterator[RecordedEvent]:
        return self

    def __next__(self) -> RecordedEvent:
        return self._impl.__next__()

    def next(self, timeout: float | None = None) -> RecordedEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever)."""
        return self._impl.next(timeout)

    def cancel(self) -> None:
        """Stops the subscription: a waiting or later ``next`` ends it."""
        self._impl.cancel()

    @property
    def cancelled(self) -> bool:
        return self._impl.cancelled

    @property
    def where(self) -> int:
        """The position the next event is read from (resume a new subscription here)."""
        return self._impl.where

    @property
    def lag(self) -> tuple[int, int]:
        """(events, bytes) committed but not yet read."""
        return self._impl.lag

    def ack(self, resume_at: int) -> None:
        """A named subscription: every event before ``resume_at`` is processed."""
        self._impl.ack(resume_at)

    def commit(self) -> None:
        """A named subscription: makes the newest ack durable."""
        self._impl.commit()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class EventLog:
    """A varve log in one directory. Open it with ``create``, ``open``,
    ``open_or_create`` or ``open_read_only``; close it with ``close()`` or a
    ``with`` block.

    Options: ``durability`` is ``"none"`` (an append survives a crash of the
    process, not a power loss, until ``flush``/``wait_durable``), ``"group"``
    (a background flusher syncs batches; ``wait_durable(result.end)`` returns
    once the append survives a power loss) or ``"sync"`` (each append returns
    once durable). ``segment_bytes`` (a power of two, 64 KiB..1 GiB) is fixed
    at creation. ``upcasters`` names a JSON upcaster file (docs/DESIGN.md).

    ``master_key`` (32 bytes, or None) turns on crypto-shredding: every payload
    appended is sealed with its stream's own data key (``forget``). A log that
    has keys refuses a writer without its key and any open with another key
    (``InvalidArgument``); read-only without it, reading an encrypted event
    raises ``InvalidArgument``. Stream ids and metadata are never encrypted."""

    def __init__(self, impl: Any) -> None:
        self._impl = impl

    @classmethod
    def _open(cls, how: int, dir: str, durability: str, segment_bytes: int,
              group_commit_us: int, verify_checksums: bool, upcasters: str | None,
              master_key: bytes | None) -> EventLog:
        dir = _os.fspath(dir)
        if how in (0, 2):  # creating: the parent directories too
            parent = _os.path.dirname(_os.path.abspath(dir))
            _os.makedirs(parent, exist_ok=True)
        return cls(_varve.EventLog._open(how, dir, durability, segment_bytes,
                                         group_commit_us, verify_checksums, upcasters, master_key))

    @classmethod
    def create(cls, dir: str, *, durability: str = "none", segment_bytes: int = 0,
               group_commit_us: int = 1000, verify_checksums: bool = True,
               upcasters: str | None = None, master_key: bytes | None = None) -> EventLog:
        """Creates an empty log in ``dir`` (refused where one already is)."""
        return cls._open(0, dir, durability, segment_bytes, group_commit_us, verify_checksums,
                         upcasters, master_key)

    @classmethod
    def open(cls, dir: str, *, durability: str = "none", segment_bytes: int = 0,
             group_commit_us: int = 1000, verify_checksums: bool = True,
             upcasters: str | None = None, master_key: bytes | None = None) -> EventLog:
        """Opens an existing log for writing (running recovery on its tail)."""
        return cls._open(1, dir, durability, segment_bytes, group_commit_us, verify_checksums,
                         upcasters, master_key)

    @classmethod
    def open_or_create(cls, dir: str, *, durability: str = "none", segment_bytes: int = 0,
                       group_commit_us: int = 1000, verify_checksums: bool = True,
                       upcasters: str | None = None, master_key: bytes | None = None) -> EventLog:
        return cls._open(2, dir, durability, segment_bytes, group_commit_us, verify_checksums,
                         upcasters, master_key)

    @classmethod
    def open_read_only(cls, dir: str, *, verify_checksums: bool = True,
                       upcasters: str | None = None, master_key: bytes | None = None) -> EventLog:
        """Opens a log for reading, following what its writer (any process) commits."""
        return cls._open(3, dir, "none", 0, 1000, verify_checksums, upcasters, master_key)

    # ---- writing ----------------------------------------------------------

    def append(self, stream: StreamId, events: EventData | Sequence[EventData],
               expected: int = ANY) -> AppendResult:
        """Appends events to one stream atomically, if its version is ``expected``.

        Raises ``WrongExpectedVersion`` (with ``actual_version``) on a conflict,
        writing nothing. Events carrying an ``event_id`` already at that place
        of the stream return the original result with ``duplicate`` set."""
        if isinstance(events, EventData):
            events = (events,)
        return self._impl.append(stream, events, expected)

    def append_multi(self, batches: Iterable[tuple[StreamId, int, Sequence[EventData]]]) -> dict[str, Any]:
        """Appends to several streams as one unit of work: every stream's
        expected version holds and all events are written, or nothing is (the
        error names the first stream that conflicted). A stream with no events
        is a version check only. Returns ``first``, ``end``, ``first_sequence``,
        ``events`` and ``streams`` (an ``AppendResult`` per batch)."""
        return self._impl.append_multi(list(batches))

    def wait_durable(self, position: int) -> None:
        """Blocks until everything before ``position`` survives a power loss."""
        self._impl.wait_durable(position)

    def flush(self) -> None:
        """Makes everything committed so far durable."""
        self._impl.flush()

    def forget(self, stream: StreamId) -> dict[str, int]:
        """Crypto-shredding: destroys every data key of ``stream``, durably. From
        then on every read of its encrypted events, in this process and in
        others, gives them with ``forgotten`` set and ``data`` empty (type,
        version, ids and metadata remain). Later appends to the stream get a new
        key. Returns ``keys_destroyed``, ``events_forgotten``, ``plain_events``
        (appended before the log had a key: still readable) and
        ``forget_sequence``. ``NotFoundError`` for a stream that does not exist;
        ``InvalidArgument`` for a log without a master key or a stream with no
        encrypted event; ``ReadOnlyError`` on a read-only log."""
        return self._impl.forget(stream)

    # Stream lifecycle (docs/DESIGN.md "Stream lifecycle"). Each change is
    # durable (in DIR/streams) when it returns, and every read then hides what
    # it covers, in this process and in others; the events stay on disk until
    # retention or ``scavenge`` gives their space back. Each returns the
    # stream's metadata after the change (``stream_metadata``). A read-only log
    # raises ``ReadOnlyError``; a deleted stream takes no more changes
    # (``StreamDeletedError``).

    def delete_stream(self, stream: StreamId) -> dict[str, Any]:
        """Deletes (tombstones) ``stream``, for good: reading it raises
        ``StreamDeletedError``, its events leave ``read`` and subscriptions, and
        appends to it raise ``StreamDeletedError``. ``NotFoundError`` for a
        stream with no events; deleting a deleted stream changes nothing."""
        return self._impl.delete_stream(stream)

    def truncate_stream(self, stream: StreamId, before: int) -> dict[str, Any]:
        """Hides the versions of ``stream`` below ``before`` (at most its
        version + 1: all of them; the stream goes on from its version). Only
        moves forward (``InvalidArgument`` otherwise); ``NotFoundError`` for a
        stream with no events."""
        return self._impl.truncate_stream(stream, before)

    def set_stream_limits(self, stream: StreamId, max_count: int = 0,
                          max_age_ns: int = 0) -> dict[str, Any]:
        """Replaces the limits of ``stream`` (0: none): only the newest
        ``max_count`` events are visible (``read_stream`` and ``scavenge``;
        ``read`` cannot apply it), events older than ``max_age_ns`` are hidden
        in every read. The stream need not exist yet."""
        return self._impl.set_stream_limits(stream, max_count, max_age_ns)

    def close(self) -> None:
        self._impl.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- state ------------------------------------------------------------

    @property
    def dir(self) -> str:
        return self._impl.dir

    @property
    def closed(self) -> bool:
        return self._impl.closed

    @property
    def read_only(self) -> bool:
        return self._impl.read_only

    @property
    def encrypted(self) -> bool:
        """Whether the log seals payloads (it has keys), whether or not this open has the key."""
        return self._impl.encrypted

    def forgotten(self) -> list[dict[str, Any]]:
        """The streams forgotten so far, oldest first: ``forget_sequence``,
        ``time_ns`` and ``stream``. Needs no key; read-only logs too."""
        return self._impl.forgotten()

    def stream_metadata(self, stream: StreamId) -> dict[str, Any]:
        """The lifecycle metadata of ``stream``: ``deleted``,
        ``truncate_before``, ``max_count`` and ``max_age_ns`` (all zero and
        False: none). Read-only logs too (they follow the writer's changes)."""
        return self._impl.stream_metadata(stream)

    def stream_metadata_list(self) -> list[dict[str, Any]]:
        """Every stream with lifecycle metadata, in the order of their last
        change: ``stream``, ``metadata`` (as ``stream_metadata``),
        ``changed_ns`` and ``change_number``. Read-only logs too."""
        return self._impl.stream_metadata_list()

    @property
    def committed(self) -> int:
        """The end of what readers see."""
        return self._impl.committed

    @property
    def durable(self) -> int:
        """The end of what survives a power loss."""
        return self._impl.durable

    @property
    def next_sequence(self) -> int:
        """The number of events in the log (sequences are dense, from 0)."""
        return self._impl.next_sequence

    def version_of(self, stream: StreamId) -> int:
        """A stream's version (0: it does not exist). O(1)."""
        return self._impl.version_of(stream)

    def position_of(self, sequence: int) -> int:
        """The position of the event with ``sequence`` (the end for ``next_sequence``)."""
        return self._impl.position_of(sequence)

    def position_at_time(self, t_ns: int) -> int:
        """The position of the first event stamped at or after ``t_ns``."""
        return self._impl.position_at_time(t_ns)

    def type_id(self, name: str) -> int:
        """The numeric id of an event type name (registering it on a writer)."""
        return self._impl.type_id(name)

    def type_name(self, type_id: int) -> str | None:
        return self._impl.type_name(type_id)

    def stats(self) -> dict[str, int]:
        return self._impl.stats()

    def retain(self, *, max_age_ns: int | None = None, max_bytes: int | None = None,
               before: int | None = None, dry_run: bool = False) -> dict[str, Any]:
        """Retention: removes whole sealed segments from the head of the log,
        those whose newest event is older than ``max_age_ns``, the oldest until
        the segments take at most ``max_bytes``, those wholly before position
        ``before`` (any one set suffices). Reads below the new start then raise
        ``RemovedError``; position 0 means the start. ``dry_run`` changes
        nothing. Returns what went (``segments_removed``, ``events_removed``,
        ``start_position``, ``first_sequence``, ``held_back``: why no more)."""
        return self._impl.retain(max_age_ns, max_bytes, before, dry_run)

    def archive(self, dir: str, *, before: int | None = None, level: int = 3,
                dry_run: bool = False) -> dict[str, Any]:
        """Archive tier: moves whole sealed segments (those wholly before
        position ``before``; all by default) out of the log's directory into
        ``dir`` as zstd-compressed, checksummed files (zstd ``level``, 1..19).
        Every read keeps reaching them. A log has one archive directory.
        Only sealed segments move: one the background sealer has not finished
        yet (just filled) is left for the next pass.
        ``dry_run`` changes nothing. Returns ``segments_archived``,
        ``raw_bytes``, ``archived_bytes``, ``archive_end`` and ``dir``."""
        return self._impl.archive(dir, before, level, dry_run)

    def scavenge(self, dry_run: bool = False) -> dict[str, int]:
        """Gives back the disk space of the events stream lifecycle hides
        (deleted, truncated, over a limit): sealed segments holding whole
        batches of them are rewritten with each removed run as a sparse hole
        of the same length, so positions and sequences stay. The space returns
        once no process maps the old files (this one, until ``close``). A log
        with a tamper-evident chain raises ``InvalidArgument``. ``dry_run``
        counts and changes nothing. Returns ``segments_examined``,
        ``segments_rewritten``, ``events_removed`` and ``bytes_freed``."""
        return self._impl.scavenge(dry_run)

    # ---- reading ----------------------------------------------------------

    def read(self, from_position: int = 0, *, types: Sequence[str | int] | None = None,
             streams: Sequence[StreamId] | None = None, prefixes: Sequence[str | bytes] | None = None,
             correlation_ids: Sequence[bytes | _uuid.UUID] | None = None,
             limit: int | None = None) -> Reader:
        """Committed events in log order from ``from_position`` (0: the start),
        only those of the given types / streams / stream prefixes / correlation
        ids when given. An iterator; ``where`` is where it would continue."""
        return self._impl._read(from_position, types, streams, prefixes, correlation_ids, limit)

    def read_stream(self, stream: StreamId, from_version: int | None = None, *,
                    backward: bool = False, limit: int | None = None) -> StreamReader:
        """One stream's events from ``from_version`` (default: the first, or the
        newest when ``backward``), at most ``limit`` of them."""
        if from_version is None:
            from_version = LATEST if backward else 1
        return self._impl._read_stream(stream, from_version, backward, limit)

    def read_stream_rows(self, stream: StreamId, cls: Any, fields: Sequence[str],
                         from_version: int | None = None, *, prefix: tuple[Any, ...] = (),
                         backward: bool = False, limit: int | None = None,
                         names: Sequence[str] | None = None) -> list[Any]:
        """One stream's events as rows of the caller's own type: a list of
        ``cls(*prefix, *values)``, the values the event's ``fields`` in order:
        ``sequence``, ``position``, ``stream``, ``version``, ``type``, ``type_id``,
        ``data``, ``timestamp_ns``, ``meta:KEY`` (bytes or None) or ``meta_int:KEY``
        (the value parsed as a decimal int, or None). No RecordedEvent is made:
        for an application's own event objects, about half the cost per event.
        With ``names`` (one attribute name per prefix value and field) each row
        is made as unpickling makes an object: ``cls.__new__(cls)``, then its
        ``__dict__`` filled, without calling ``__init__`` (for plain classes
        and dataclasses whose ``__init__`` only stores its arguments)."""
        if from_version is None:
            from_version = LATEST if backward else 1
        return self._impl._read_stream_rows(stream, from_version, backward, limit, cls,
                                            tuple(prefix), tuple(fields),
                                            None if names is None else tuple(names))

    def read_rows(self, from_position: int, cls: Any, fields: Sequence[str], *, limit: int,
                  prefix: tuple[Any, ...] = (), names: Sequence[str] | None = None,
                  types: Sequence[str | int] | None = None,
                  exclude_types: Sequence[str | int] | None = None,
                  until_sequence: int | None = None) -> tuple[list[Any], int, int | None]:
        """Up to ``limit`` committed events from ``from_position`` as rows of the
        caller's own type (see ``read_stream_rows``; fields also ``number``, the
        sequence + 1, and ``stream_uuid``, the stream's text as a uuid.UUID),
        skipping ``exclude_types``, keeping only ``types`` when given, stopping
        before the first event whose sequence passes ``until_sequence``.
        Returns (rows, the position just past the last event consumed, that
        event's sequence + 1 or None): pass them back to continue."""
        return self._impl._read_rows(from_position, limit, cls, tuple(prefix), tuple(fields),
                                     None if names is None else tuple(names), types,
                                     exclude_types, until_sequence)

    def subscribe(self, from_position: int = 0, *, types: Sequence[str | int] | None = None,
                  streams: Sequence[StreamId] | None = None,
                  prefixes: Sequence[str | bytes] | None = None, name: str | None = None,
                  spin_us: float = 20.0) -> Subscription:
        """Follows the log from ``from_position`` (``END``: live events only).
        A ``name`` keeps the position in the log directory (``ack``/``commit``)
        and resumes there."""
        return Subscription(self, self._impl._subscribe(from_position, types, streams, prefixes,
                                                        name, spin_us))
