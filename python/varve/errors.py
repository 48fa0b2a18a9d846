"""varve's exceptions: one class per error code of the C++ library.

Every exception carries ``code`` (the library's error name, e.g.
``"wrong_expected_version"``) and a message that names the file and offset
where bytes on disk are at fault. A concurrency conflict also says which
stream and its ``actual_version``.
"""

from __future__ import annotations


class Error(Exception):
    """Any error reported by varve."""

    def __init__(
        self,
        message: str,
        code: str = "error",
        actual_version: int | None = None,
        stream: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.actual_version = actual_version
        self.stream = stream


class WrongExpectedVersion(Error):
    """The stream's version was not the expected one; nothing was written.

    ``actual_version`` is the stream's version (0: no such stream)."""


class CorruptionError(Error):
    """Bytes on disk failed validation (the message names file and offset)."""


class NotFoundError(Error):
    """A directory, file, stream, type or position does not exist."""


class InvalidArgument(Error, ValueError):
    """An argument varve cannot accept."""


class LockedError(Error):
    """Another writer (thread or process) holds the log."""


class ReadOnlyError(Error):
    """The log is open read-only, or refuses writes after a failed sync."""


class NoSpaceError(Error, OSError):
    """The disk is full; nothing acknowledged was lost."""


class TooLargeError(Error, ValueError):
    """An event or a batch does not fit in one segment."""


class CancelledError(Error):
    """A subscription was cancelled."""


class RemovedError(NotFoundError):
    """The position or stream version was removed by retention; the message says where the log starts."""


class StreamDeletedError(NotFoundError):
    """The stream was deleted (tombstoned): it cannot be read or appended to."""


_BY_CODE: dict[str, type[Error]] = {
    "error": Error,
    "wrong_expected_version": WrongExpectedVersion,
    "corruption": CorruptionError,
    "io_error": Error,
    "no_space": NoSpaceError,
    "not_found": NotFoundError,
    "invalid_argument": InvalidArgument,
    "not_a_log": NotFoundError,
    "newer_format": Error,
    "locked": LockedError,
    "read_only": ReadOnlyError,
    "too_large": TooLargeError,
    "cancelled": CancelledError,
    "already_exists": Error,
    "removed": RemovedError,
    "stream_deleted": StreamDeletedError,
}
