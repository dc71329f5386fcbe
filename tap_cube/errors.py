"""Errors that end a run with one clear line, and the scrubbing that keeps secrets out."""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import typing as t


class CubeError(Exception):
    """An error the user can act on; its message is the one line a failed run ends with."""


class ConfigError(CubeError):
    """The configuration is invalid."""


class CatalogError(CubeError):
    """A given catalog cannot describe the records the tap emits."""


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


class PageGoneError(CubeError):
    """A later page answered the API's 404 (`Invalid page.`): rows were removed while paging."""


class StateError(CubeError):
    """The given state cannot be trusted: what it says would be read wrongly."""


class DeletionsWithheldError(CubeError):
    """A partition would lose more of its rows than max_deletion_share allows."""


class RetriesExhaustedError(CubeError):
    """A request kept failing with retriable errors."""


class OutputClosedError(CubeError):
    """Standard output was closed: the target or the next command stopped reading."""


class Stopped(BaseException):
    """A signal asked the run to stop.

    A BaseException, so that no `except Exception` on the way mistakes it for a failure
    to handle, and every `finally` on the way still runs.
    """

    def __init__(self, signum: int, records_written: int = 0) -> None:
        super().__init__(signum)
        self.signum = signum
        #: RECORD messages written before the stop, for the run's last line.
        self.records_written = records_written


class Cancelled(Exception):
    """Outstanding work was cancelled because the run is ending."""


class SecretScrubber:
    """Replaces every known secret, in any form it may take, with a placeholder.

    requests' own exceptions can carry URLs and headers, and a server may echo what it
    received, so secrets are removed from every log record and error message rather
    than trusting each call site. Forms: the secret itself, its escaped (`repr`) forms,
    the base64 of `username:password` that HTTP Basic sends, and each of these
    percent-encoded as a URL carries it (any character as itself or as `%XX` of its
    UTF-8 or latin-1 bytes, in either case, a space also as `+`, encoded once or twice).
    """

    PLACEHOLDER = "***"

    def __init__(self) -> None:
        self._forms: list[str] = []
        self._pattern: re.Pattern[str] | None = None

    def add(self, *secrets: str) -> None:
        for secret in secrets:
            for form in (secret, repr(secret)[1:-1], repr(secret.encode("utf-8"))[2:-1]):
                if form and form not in self._forms:
                    self._forms.append(form)
        # Longest first, so a secret that contains another is replaced whole.
        self._forms.sort(key=len, reverse=True)
        self._pattern = re.compile("|".join(_url_encodable(form) for form in self._forms))

    def add_basic(self, username: str, password: str) -> None:
        """The password, and the header value HTTP Basic makes of the pair."""
        self.add(password)
        for encoding in ("latin-1", "utf-8"):
            with contextlib.suppress(UnicodeEncodeError):
                pair = f"{username}:{password}".encode(encoding)
                self.add(base64.b64encode(pair).decode("ascii"))

    def scrub(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(self.PLACEHOLDER, text)

    def scrub_record(self, record: logging.LogRecord) -> None:
        """Scrub a log record in place: its message and any traceback it carries."""
        if self._pattern is None:
            return
        message = record.getMessage()
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are only shown at DEBUG; keep them free of secrets too.
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None


def _url_encodable(form: str) -> str:
    """A pattern for `form` as written, or percent-encoded (once or twice) in any way."""
    return "".join(_url_encodable_char(char) for char in form)


def _url_encodable_char(char: str) -> str:
    ways = {re.escape(char)}
    for encoding in ("utf-8", "latin-1"):
        with contextlib.suppress(UnicodeEncodeError):
            data = char.encode(encoding)
            ways.add("".join(f"%(?:25)?{_any_case(f'{byte:02x}')}" for byte in data))
    if char == " ":
        ways.add(r"\+")
    return "(?:" + "|".join(sorted(ways)) + ")"


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in hex_digits)


#: One scrubber per process: secrets of every tap instance are registered here.
scrubber = SecretScrubber()


def install_scrubber() -> None:
    """Scrub every log record as it is made, whichever logger or handler writes it.

    A handler filter would miss handlers added later, logging's last-resort handler and
    third-party loggers with handlers of their own.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "scrubs_secrets", False):
        return

    def make_scrubbed_record(*args: t.Any, **kwargs: t.Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        scrubber.scrub_record(record)
        return record

    make_scrubbed_record.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_scrubbed_record)
