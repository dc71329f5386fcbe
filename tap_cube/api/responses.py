"""The server's answers: reading a body in time, judging its status, decoding a page.

Everything here looks at one response; what to do about a failure (retry it, or say what
to fix) is the client's business (tap_cube/api/client.py).
"""

from __future__ import annotations

import codecs
import email.message
import email.utils
import time
import typing as t
from http import HTTPStatus
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_cube.api import json_text
from tap_cube.errors import ApiError

_READ_CHUNK = 1 << 16
_UTF8_BOM = codecs.BOM_UTF8


class ThrottledError(RetriableAPIError):
    """429: the server asked us to slow down, perhaps saying for how long."""

    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message, response)
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))


class MalformedPageError(RetriableAPIError):
    """A 200 whose body is not the JSON the endpoint returns (a proxy cut it short)."""


class UndecodableBodyError(ValueError):
    """A 200 whose body is in no charset it can be read in: asked again, it would be
    the same, so it is not retried."""


class ClientStatusError(FatalAPIError):
    """A 4xx answer, to be explained in terms of what the user configured."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        detail = api_detail(response)
        #: Whether the API itself answered (DRF's JSON `detail`), not the web server.
        self.from_api = detail is not None
        #: The server's own explanation: DRF's `detail`, else a short status text.
        self.detail = detail if detail is not None else response.reason or "no explanation given"
        super().__init__(f"{self.status} {response.reason}: {self.detail}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def api_detail(response: requests.Response) -> str | None:
    """DRF's explanation, a JSON object's string `detail`; None when the body is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return t.cast("str", body["detail"])
    return None


def describe_failure(error: object) -> str:
    """A retriable failure in a few words: the status, or the kind of network error.

    Never the exception's own text for network errors: requests puts URLs and more in it.
    """
    response = getattr(error, "response", None)
    if isinstance(response, requests.Response):
        return f"{response.status_code} {response.reason}"
    if isinstance(error, MalformedPageError | SlowBodyError):
        return str(error)
    return type(error).__name__


def host_and_port(url: str) -> str:
    """`host:port` of a URL, the port spelled out even when it is the scheme's default."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


class SlowBodyError(requests.exceptions.Timeout):
    """The answer kept arriving, too slowly to finish within request_timeout."""


def read_body(response: requests.Response, deadline: float) -> None:
    """Read the whole body by `deadline`, not just each piece within the read timeout.

    A body that trickles in a few bytes at a time never trips the per-read timeout and
    could hold a request, and the run, indefinitely.
    """
    chunks: list[bytes] = []
    try:
        # read1 returns what has arrived; iter_content would wait for whole chunks.
        while chunk := response.raw.read1(_READ_CHUNK, decode_content=True):
            chunks.append(chunk)
            if time.monotonic() > deadline:
                response.close()
                msg = "the answer took longer than request_timeout to arrive"
                raise SlowBodyError(msg)
    # The same translation requests makes when it reads a body itself.
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(str(exc)) from exc
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(str(exc)) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(str(exc)) from exc
    # What requests itself stores when it reads a body, so .content and .json() work.
    response._content = b"".join(chunks)


def utf8_body(content: bytes, content_type: str | None) -> bytes:
    """The body as UTF-8 JSON: without a UTF-8 byte order mark, and decoded from the
    charset its Content-Type declares if that is another.

    JSON is UTF-8 (RFC 8259), but a server may say otherwise, and some editors and
    frameworks put a BOM first. A body that cannot be decoded fails with an
    UndecodableBodyError: it is no fault a retry mends.
    """
    message = email.message.Message()
    message["content-type"] = content_type or ""
    charset = message.get_content_charset()
    if charset is not None:
        try:
            codec = codecs.lookup(charset).name
        except LookupError:
            msg = f"declares charset {charset}, which tap-cube cannot decode"
            raise UndecodableBodyError(msg) from None
        if codec not in ("utf-8", "utf-8-sig"):
            return _decoded(content, charset, f"is not {charset}").encode("utf-8")
    return content.removeprefix(_UTF8_BOM)


def _decoded(content: bytes, charset: str, wrong: str) -> str:
    """`content` decoded; a body cut short within a character is a retriable
    MalformedPageError, any other wrong byte an UndecodableBodyError saying `wrong`."""
    try:
        return content.decode(charset)
    except UnicodeDecodeError as exc:
        if exc.end >= len(content):
            msg = f"invalid JSON or UTF-8 in a 200 response ({len(content)} bytes)"
            raise MalformedPageError(msg) from exc
        msg = f"{wrong} (byte 0x{content[exc.start]:02x} at {exc.start})"
        raise UndecodableBodyError(msg) from None


def decode_body(
    content: bytes, *, paginated: bool, content_type: str | None = None
) -> dict[str, t.Any]:
    """Decode a list response into DRF's page shape, or fail as retriable.

    A body that strict JSON refuses, or that holds a NUL no database takes, is decoded
    leniently (tap_cube/api/json_text.py): the values in question are kept as their JSON text,
    and the page is not asked for again, since it would come back the same. So is a body
    in no charset it can be read in, which is an UndecodableBodyError (`utf8_body`).
    """
    content = utf8_body(content, content_type)
    try:
        body = msgspec.json.decode(content)
        lenient = b"\\u0000" in content
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        lenient = True
    if lenient:
        try:
            # Values of fields are in rows, in the results list of the page.
            text = _decoded(content, "utf-8", "is not UTF-8 and declares no other charset")
            body = json_text.decode(text, field_depth=3 if paginated else 2)
        except json_text.LenientDecodeError as exc:
            msg = f"invalid JSON or UTF-8 in a 200 response ({len(content)} bytes)"
            raise MalformedPageError(msg) from exc
    if not paginated:
        if not isinstance(body, list):
            msg = "a 200 response that is not a JSON list"
            raise MalformedPageError(msg)
        body = {"count": len(body), "next": None, "results": body}
    elif not isinstance(body, dict) or not isinstance(body.get("results"), list):
        msg = "a 200 response without a `results` list"
        raise MalformedPageError(msg)
    if not all(type(row) is dict for row in body["results"]):
        msg = "a 200 response whose rows are not all JSON objects"
        raise MalformedPageError(msg)
    return t.cast("dict[str, t.Any]", body)


def check_status(response: requests.Response) -> None:
    """Raise for any answer but a page: retriable for 429 and 5xx, fatal for the rest."""
    status = response.status_code
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        raise ThrottledError(f"{status} {response.reason}", response)
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        raise RetriableAPIError(f"{status} {response.reason}", response)
    if status >= HTTPStatus.BAD_REQUEST:
        raise ClientStatusError(response)
    if status >= HTTPStatus.MULTIPLE_CHOICES:
        msg = f"unexpected {status} {response.reason} without a usable Location"
        raise ApiError(msg)
