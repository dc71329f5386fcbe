"""Errors that end a run with one clear line, and the scrubbing that keeps secrets out."""

from __future__ import annotations

import logging
import typing as t

from typing_extensions import override

if t.TYPE_CHECKING:
    from collections.abc import Iterable


class CubeError(Exception):
    """An error the user can act on; its message is the one line a failed run ends with."""


class ConfigError(CubeError):
    """The configuration is invalid."""


class AuthenticationError(CubeError):
    """The server rejected the credentials (401)."""


class InaccessibleError(CubeError):
    """A configured container (assignment, data owner) answered 403 or 404."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ApiError(CubeError):
    """The server answered in a way the tap cannot continue from."""


class IncompleteError(CubeError):
    """A list could not be read completely: records would be missing."""


class RetriesExhaustedError(CubeError):
    """A request kept failing with retriable errors."""


class OutputClosedError(CubeError):
    """Standard output was closed: the target or the next command stopped reading."""


class Stopped(BaseException):
    """A signal asked the run to stop.

    A BaseException, so that no `except Exception` on the way mistakes it for a failure
    to handle, and every `finally` on the way still runs.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Cancelled(Exception):
    """Outstanding work was cancelled because the run is ending."""


class SecretScrubber(logging.Filter):
    """Replaces every known secret in text and in log records with a placeholder.

    requests' own exceptions can carry URLs and headers, and a server may echo what it
    received, so secrets are removed from every log line and error message rather than
    trusting each call site.
    """

    PLACEHOLDER = "***"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            if secret and secret not in self._secrets:
                self._secrets.append(secret)
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, self.PLACEHOLDER)
        return text

    @override
    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            scrubbed = self.scrub(message)
            if record.exc_info and record.exc_info[1] is not None:
                # Tracebacks are only shown at DEBUG; keep them free of secrets too.
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            if scrubbed != message:
                record.msg, record.args = scrubbed, None
        return True


#: One scrubber per process: secrets of every tap instance are registered here.
scrubber = SecretScrubber()


def install_scrubber() -> None:
    """Attach the scrubber to every handler that can write a log line."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if scrubber not in handler.filters:
                handler.addFilter(scrubber)
