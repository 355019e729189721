"""The project's errors. Each docstring is the default message shown to users.

Pages turn any :class:`StationManagerError` into an ``st.error`` with its message; the CLI
prints it and exits non-zero. Database errors are translated in :func:`core.db.translate`.
"""

from __future__ import annotations

from datetime import UTC, datetime


class StationManagerError(Exception):
    """Something went wrong in StationManager."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigError(StationManagerError):
    """A setting has an invalid value."""


class DatabaseError(StationManagerError):
    """The database could not complete the request."""


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached."""


class PoolBusy(DatabaseUnavailable):
    """Every connection of this process's pool stayed busy: try again in a moment."""


class NotFound(StationManagerError):
    """The requested item does not exist."""


class PermissionDenied(StationManagerError):
    """Your role does not allow this."""


class AccountLocked(StationManagerError):
    """Too many failed sign-ins: this user name is locked for a while.

    Said alike of every name, existing or not. ``until`` is when the lock ends (UTC).
    """

    def __init__(self, message: str | None = None, *, until: datetime | None = None) -> None:
        self.until = until
        if message is None and until is not None:
            message = (f"Too many failed sign-ins: this user name is locked until "
                       f"{until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC.")
        super().__init__(message)


# Said alike of every name, existing or not; nothing is counted against the name (core.signin).
class SignInBusy(StationManagerError):
    """Many sign-ins of this user name are being checked at once: try again in a moment."""


class ParseError(StationManagerError):
    """The file could not be read.

    Carries the file name and the 1-based line where the problem was found, so the
    message reads like ``data.dat, line 5: header has 12 columns but this row has 11``.
    """

    def __init__(self, reason: str, *, file: str | None = None, line: int | None = None) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        where = ", ".join(p for p in (file, f"line {line}" if line else None) if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class InvalidValue(StationManagerError):
    """A value is outside what StationManager accepts.

    Carries the value's JSON path when it came from a document (``$.measurement_location[0]
    .latitude_ddeg: latitude 95 is outside -90 … 90``), and ``problems``: every problem
    found, each as ``"path: reason"``.
    """

    def __init__(self, reason: str, *, path: str | None = None, problems: list[str] | None = None) -> None:
        self.reason = reason
        self.path = path
        message = f"{path}: {reason}" if path else reason
        self.problems = list(problems) if problems else [message]
        super().__init__(message)


class BackupError(StationManagerError):
    """The backup cannot be made or used."""
