"""A persistence module for the ``eventsourcing`` library (9.5.x) on varve.

Select it with ``PERSISTENCE_MODULE=eventsourcing_varve`` and a directory in
``VARVE_DIR``. How the library's records map onto the log:

- An aggregate's stored events are one varve stream, named by its originator
  id (``str(uuid)``, or the text id when ``ORIGINATOR_ID_TYPE=text``); the
  topic is the event type (varve's type registry), the state the payload, the
  originator version the metadata entry ``es.v`` (decimal). Originator
  versions must rise along a stream: inserting at or below the stream's
  newest one raises ``IntegrityError`` (a conflict, or a duplicate).
- One ``insert_events`` call is one varve multi-stream append: all or
  nothing, each stream checked against the version this recorder last saw.
- Notification ids are varve sequence numbers plus one: increasing, and
  contiguous except where a process recorder wrote a tracking record alone
  (tracking records are records of the same log: stream
  ``$tracking:<application>``, type ``$eventsourcing.tracking``, payload the
  notification id; written in the same atomic append as the events they
  track, and never returned as notifications).
- ``VARVE_SEGMENT_BYTES``: a new log's segment size (a power of two, 64 KiB
  to 1 GiB; default 64 MiB).
- ``VARVE_DURABILITY``: ``group`` (default: ``insert_events`` returns once its
  events survive a power loss, concurrent inserts sharing a sync), ``sync``,
  or ``none`` (page cache only: survives a crash of the process, not a
  power loss).
- Each application has its own logs, named after it: its events in
  ``VARVE_DIR/<Application>/events``, its snapshots
  (``aggregate_recorder("snapshots")``) in ``VARVE_DIR/<Application>/snapshots``
  (without an application name: ``VARVE_DIR/events`` and ``VARVE_DIR/snapshots``).

One process writes a directory at a time (varve's writer lock); every
recorder of that process shares one open log per directory.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import varve
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    Notification,
    OperationalError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.utils import Environment, resolve_topic

__all__ = [
    "Factory",
    "VarveAggregateRecorder",
    "VarveApplicationRecorder",
    "VarveDatastore",
    "VarveFactory",
    "VarveProcessRecorder",
    "VarveSubscription",
    "VarveTrackingRecorder",
]

VERSION_KEY = "es.v"
# StoredEvent(originator_id, originator_version, topic, state), the id given.
STORED_EVENT_FIELDS = ("meta_int:" + VERSION_KEY, "type", "data")


def _rows_by_state() -> tuple[str, ...] | None:
    """StoredEvent's field names when its instances can be made as unpickling
    makes them (a dataclass with a __dict__ and an __init__ that only stores
    its fields, as in eventsourcing 9.5); None: call StoredEvent(...)."""
    import dataclasses

    if not dataclasses.is_dataclass(StoredEvent) or hasattr(StoredEvent, "__slots__"):
        return None
    if hasattr(StoredEvent, "__post_init__"):
        return None
    names = tuple(f.name for f in dataclasses.fields(StoredEvent))
    return names if names == ("originator_id", "originator_version", "topic", "state") else None


STORED_EVENT_NAMES = _rows_by_state()
# Notification(originator_id, originator_version, topic, state, id).
NOTIFICATION_FIELDS_UUID = ("stream_uuid", "meta_int:" + VERSION_KEY, "type", "data", "number")
NOTIFICATION_FIELDS_TEXT = ("stream", "meta_int:" + VERSION_KEY, "type", "data", "number")
NOTIFICATION_NAMES = (
    STORED_EVENT_NAMES + ("id",)
    if STORED_EVENT_NAMES is not None
    and tuple(f.name for f in __import__("dataclasses").fields(Notification)) == STORED_EVENT_NAMES + ("id",)
    and not hasattr(Notification, "__slots__") and not hasattr(Notification, "__post_init__")
    else None
)
TRACKING_TYPE = "$eventsourcing.tracking"
TRACKING_STREAM_PREFIX = "$tracking:"
_HEADS_CACHE_LIMIT = 100_000


class VarveDatastore:
    """One open varve log, shared by every recorder of this process that uses
    its directory, with the writer-side state they share: a lock that makes
    check-then-append atomic within the process, and a cache of stream heads
    (varve version, newest originator version). This process is the log's
    only writer, so the cache cannot go stale; it is dropped whole when it
    grows past a bound."""

    _open: dict[str, tuple[VarveDatastore, int]] = {}
    _open_lock = threading.Lock()

    def __init__(self, path: str, durability: str, segment_bytes: int = 0) -> None:
        self.path = path
        self.durability = durability
        self.log = varve.EventLog.open_or_create(path, durability=durability,
                                                 segment_bytes=segment_bytes)
        self.lock = threading.RLock()
        self.heads: dict[str, tuple[int, int | None]] = {}
        # Where recent notification reads stopped: next sequence -> its
        # position. A follower asks for the page after the one it read, and
        # finds it here instead of through position_of (which, in the
        # unsealed tail, scans the segment from its start).
        self.cursors: dict[int, int] = {}
        self.cursors_lock = threading.Lock()

    def position_of(self, seq: int) -> int:
        with self.cursors_lock:
            p = self.cursors.get(seq)
        return self.log.position_of(seq) if p is None else p

    def remember(self, seq: int, position: int) -> None:
        with self.cursors_lock:
            if len(self.cursors) >= 64:
                self.cursors.pop(next(iter(self.cursors)))
            self.cursors[seq] = position

    @classmethod
    def acquire(cls, path: str, durability: str, segment_bytes: int = 0) -> VarveDatastore:
        path = os.path.realpath(path)
        with cls._open_lock:
            entry = cls._open.get(path)
            if entry is None:
                ds = cls(path, durability, segment_bytes)
                cls._open[path] = (ds, 1)
                return ds
            ds, refs = entry
            cls._open[path] = (ds, refs + 1)
            return ds

    def release(self) -> None:
        with self._open_lock:
            ds, refs = self._open[self.path]
            if refs > 1:
                self._open[self.path] = (ds, refs - 1)
                return
            del self._open[self.path]
        self.log.close()

    def head(self, stream: str) -> tuple[int, int | None]:
        """(varve version, newest originator version) of a stream; under lock."""
        return self._head(stream, lambda e: int(e.metadata[VERSION_KEY]))

    def tracking_head(self, application_name: str) -> tuple[int, int | None]:
        """(varve version, newest tracked notification id) of an application; under lock."""
        return self._head(TRACKING_STREAM_PREFIX + application_name, lambda e: int(e.data))

    def _head(self, stream: str, value_of: Any) -> tuple[int, int | None]:
        # Cached: this process is the log's only writer (see the class).
        h = self.heads.get(stream)
        if h is None:
            n = self.log.version_of(stream)
            last = None
            if n:
                last = value_of(next(iter(self.log.read_stream(stream, backward=True, limit=1))))
            h = (n, last)
            if len(self.heads) >= _HEADS_CACHE_LIMIT:
                self.heads.clear()
            self.heads[stream] = h
        return h


class VarveRecorder:
    """A recorder owns one reference to its datastore (VarveDatastore.acquire):
    close() (or the recorder's end) gives it back; the log closes with the
    last one. So a recorder outlives the factory that made it, as the
    library's projection runners expect."""

    def __init__(self, datastore: VarveDatastore, originator_id_type: str = "uuid") -> None:
        self.datastore = datastore
        self.originator_id_type = originator_id_type
        self._uuids: dict[str, UUID] = {}  # parsed stream names (parsing costs more than reading)
        self._released = False

    def close(self) -> None:
        if not self._released:
            self._released = True
            self.datastore.release()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass

    def _key(self, originator_id: UUID | str) -> str:
        return str(originator_id)

    def _originator_id(self, stream: Any) -> UUID | str:
        if self.originator_id_type != "uuid":
            return stream
        u = self._uuids.get(stream)
        if u is None:
            if len(self._uuids) >= 10_000:
                self._uuids.clear()
            u = self._uuids[stream] = UUID(stream)
        return u

    def _insert(self, stored_events: Sequence[StoredEvent], tracking: Tracking | None) -> list[int]:
        """One atomic append of the events (grouped per stream, in call order
        within each) and the tracking record; returns each event's
        notification id, in the order given."""
        ds = self.datastore
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(stored_events):
            groups.setdefault(self._key(s.originator_id), []).append(i)
        with ds.lock:
            batches: list[tuple[str, int, list[varve.EventData]]] = []
            new_heads: dict[str, tuple[int, int | None]] = {}
            order: list[int] = []  # input index of each event, in append order
            for key, idxs in groups.items():
                versions = [stored_events[i].originator_version for i in idxs]
                if len(set(versions)) != len(versions):
                    msg = f"stored events are not unique: stream {key!r}, versions {versions}"
                    raise IntegrityError(msg)
                idxs.sort(key=lambda i: stored_events[i].originator_version)
                n, last = ds.head(key)
                first = stored_events[idxs[0]].originator_version
                if last is not None and first <= last:
                    msg = (f"stream {key!r} already holds version {last}: cannot insert version "
                           f"{first} (a conflict or a duplicate)")
                    raise IntegrityError(msg)
                batches.append((key, n, [
                    varve.EventData(stored_events[i].topic, stored_events[i].state,
                                    metadata={VERSION_KEY: str(stored_events[i].originator_version)})
                    for i in idxs
                ]))
                order.extend(idxs)
                new_heads[key] = (n + len(idxs), stored_events[idxs[-1]].originator_version)
            if tracking is not None:
                n, last = ds.tracking_head(tracking.application_name)
                if last is not None and tracking.notification_id <= last:
                    msg = (f"tracking notification ID {tracking.notification_id} not greater than "
                           f"current max tracking ID {last} of {tracking.application_name!r}")
                    raise IntegrityError(msg)
                tkey = TRACKING_STREAM_PREFIX + tracking.application_name
                batches.append((tkey, n, [
                    varve.EventData(TRACKING_TYPE, str(tracking.notification_id).encode())
                ]))
                new_heads[tkey] = (n + 1, tracking.notification_id)
            if not batches:
                return []
            try:
                result = ds.log.append_multi(batches)
            except varve.WrongExpectedVersion as e:
                ds.heads.clear()  # someone else wrote: look again next time
                raise IntegrityError(str(e)) from e
            except varve.Error as e:
                raise OperationalError(str(e)) from e
            ds.heads.update(new_heads)
        if ds.durability == "group":
            try:
                ds.log.wait_durable(result["end"])
            except varve.Error as e:
                raise OperationalError(str(e)) from e
        ids = [0] * len(order)
        first_id = result["first_sequence"] + 1
        for k, i in enumerate(order):
            ids[i] = first_id + k
        return ids


class VarveAggregateRecorder(VarveRecorder, AggregateRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        self._insert(stored_events, None)
        return None

    def _version_index(self, key: str, n: int, target: int) -> int:
        """The number of the stream's events whose originator version is <= target
        (originator versions rise with varve versions): a binary search over
        one-event stream reads, after a guess that holds for contiguous versions."""
        log = self.datastore.log

        def ov(v: int) -> int:
            e = next(iter(log.read_stream(key, v, limit=1)))
            return int(e.metadata[VERSION_KEY])

        base = ov(1)
        guess = target - base + 1  # right when versions are contiguous
        if 1 <= guess <= n and ov(guess) == target:
            return guess
        lo, hi = 0, n  # invariant: ov(lo) <= target (or lo = 0), ov(hi + 1) > target (or hi = n)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ov(mid) <= target:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        key = self._key(originator_id)
        log = self.datastore.log
        n = log.version_of(key)
        if n == 0 or limit == 0:
            return []
        # Originator versions rise with varve's versions: the range is found
        # once, then read as rows of StoredEvent with no per-event checks.
        if not desc:
            start = 1 if gt is None else self._version_index(key, n, gt) + 1
            end = n if lte is None else self._version_index(key, n, lte)
            count = end - start + 1
        else:
            start = n if lte is None else self._version_index(key, n, lte)
            end = 1 if gt is None else self._version_index(key, n, gt) + 1
            count = start - end + 1
        if count <= 0:
            return []
        if limit is not None:
            count = min(count, limit)
        return log.read_stream_rows(key, StoredEvent, STORED_EVENT_FIELDS, start,
                                    prefix=(originator_id,), backward=desc, limit=count,
                                    names=STORED_EVENT_NAMES)


class VarveApplicationRecorder(VarveAggregateRecorder, ApplicationRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._insert(stored_events, None)

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        if start is None:
            start, inclusive_of_start = 1, True
        if not inclusive_of_start:
            start += 1
        start = max(start, 1)
        log = self.datastore.log
        if start - 1 >= log.next_sequence or limit <= 0:
            return []
        ds = self.datastore
        try:
            position = ds.position_of(start - 1)
        except varve.Error as e:
            raise OperationalError(str(e)) from e
        if self.originator_id_type == "uuid":
            fields = NOTIFICATION_FIELDS_UUID
        else:
            fields = NOTIFICATION_FIELDS_TEXT
        try:
            rows, resume, next_seq = log.read_rows(
                position, Notification, fields, limit=limit, names=NOTIFICATION_NAMES,
                types=list(topics) if topics else None, exclude_types=(TRACKING_TYPE,),
                until_sequence=None if stop is None else stop - 1)
        except varve.Error as e:
            raise OperationalError(str(e)) from e
        if next_seq is not None:
            ds.remember(next_seq, resume)
        return rows

    def max_notification_id(self) -> int | None:
        return self.datastore.log.next_sequence or None

    def subscribe(self, gt: int | None = None, topics: Sequence[str] = ()) -> Subscription[ApplicationRecorder]:
        return VarveSubscription(self, gt=gt, topics=topics)


class VarveSubscription(Subscription[VarveApplicationRecorder]):
    """Follows the log with a varve subscription: history, then live events
    (from this process or another), waiting without polling the recorder."""

    def __init__(self, recorder: VarveApplicationRecorder, gt: int | None = None,
                 topics: Sequence[str] = ()) -> None:
        super().__init__(recorder=recorder, gt=gt, topics=topics)
        log = recorder.datastore.log
        start = 0 if gt is None else log.position_of(min(gt, log.next_sequence))
        self._wanted = set(topics)
        self._sub = log.subscribe(start)

    def stop(self) -> None:
        super().stop()
        self._sub.cancel()

    def __next__(self) -> Notification:
        while True:
            if self._has_been_stopped:
                raise StopIteration
            try:
                e = self._sub.next(timeout=0.1)
            except varve.CancelledError:
                raise StopIteration from None
            if e is None:
                continue
            if e.type == TRACKING_TYPE or (self._wanted and e.type not in self._wanted):
                continue
            self._last_notification_id = e.sequence + 1
            return Notification(id=e.sequence + 1,
                                originator_id=self._recorder._originator_id(e.stream),
                                originator_version=int(e.metadata[VERSION_KEY]),
                                topic=e.type, state=e.data)


class VarveTrackingRecorder(VarveRecorder, TrackingRecorder):
    def insert_tracking(self, tracking: Tracking) -> None:
        self._insert((), tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        ds = self.datastore
        with ds.lock:
            return ds.tracking_head(application_name)[1]


class VarveProcessRecorder(VarveTrackingRecorder, VarveApplicationRecorder, ProcessRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        return self._insert(stored_events, kwargs.get("tracking"))


class VarveFactory(InfrastructureFactory[VarveTrackingRecorder]):
    VARVE_DIR = "VARVE_DIR"
    VARVE_DURABILITY = "VARVE_DURABILITY"
    VARVE_SEGMENT_BYTES = "VARVE_SEGMENT_BYTES"  # a new log's segment size (default 64 MiB)
    ORIGINATOR_ID_TYPE = "ORIGINATOR_ID_TYPE"

    def __init__(self, env: Environment) -> None:
        super().__init__(env)
        base = self.env.get(self.VARVE_DIR)
        if not base:
            msg = f"varve needs a directory: set environment variable {self.VARVE_DIR}"
            raise EnvironmentError(msg)
        self.base_dir = base
        self.durability = (self.env.get(self.VARVE_DURABILITY) or "group").lower()
        if self.durability not in ("none", "group", "sync"):
            msg = f"{self.VARVE_DURABILITY} is none, group or sync, not {self.durability!r}"
            raise EnvironmentError(msg)
        self.originator_id_type = (self.env.get(self.ORIGINATOR_ID_TYPE) or "uuid").lower()
        if self.originator_id_type not in ("uuid", "text"):
            msg = f"{self.ORIGINATOR_ID_TYPE} is uuid or text, not {self.originator_id_type!r}"
            raise EnvironmentError(msg)
        self.segment_bytes = int(self.env.get(self.VARVE_SEGMENT_BYTES) or 0)
        self._recorders: weakref.WeakSet[VarveRecorder] = weakref.WeakSet()
        self._closed = False

    def _datastore(self, purpose: str) -> VarveDatastore:
        # Each application (the environment's name) has logs of its own:
        # applications sharing VARVE_DIR (a system, a projection beside the
        # application it follows) must not read each other's events as theirs.
        parts = [self.base_dir] + ([self.env.name] if self.env.name else []) + [purpose]
        return VarveDatastore.acquire(os.path.join(*parts), self.durability, self.segment_bytes)

    def _made(self, r: Any) -> Any:
        self._recorders.add(r)
        return r

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        return self._made(VarveAggregateRecorder(self._datastore(purpose), self.originator_id_type))

    def application_recorder(self) -> ApplicationRecorder:
        return self._made(VarveApplicationRecorder(self._datastore("events"), self.originator_id_type))

    def tracking_recorder(self, tracking_recorder_class: type[VarveTrackingRecorder] | None = None) -> VarveTrackingRecorder:
        if tracking_recorder_class is None:
            topic = self.env.get(self.TRACKING_RECORDER_TOPIC)
            tracking_recorder_class = resolve_topic(topic) if topic else VarveTrackingRecorder
        assert tracking_recorder_class is not None
        assert issubclass(tracking_recorder_class, VarveTrackingRecorder)
        return self._made(tracking_recorder_class(self._datastore("events"), self.originator_id_type))

    def process_recorder(self) -> ProcessRecorder:
        return self._made(VarveProcessRecorder(self._datastore("events"), self.originator_id_type))

    def close(self) -> None:
        """Closes the recorders this factory made (a log closes with its last
        recorder). Dropping the factory without close() leaves them open."""
        if self._closed:
            return
        self._closed = True
        for r in list(self._recorders):
            r.close()
        super().close()


Factory = VarveFactory
