"""The Cube REST client: one place for auth, safe requests, retries and error messages."""

from __future__ import annotations

import contextlib
import email.utils
import math
import re
import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import backoff
import msgspec
import requests
import urllib3
from requests.adapters import HTTPAdapter
from singer_sdk import RESTStream
from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_cube.coercion import RecordCoercion
from tap_cube.deletions import (
    DELETED_AT,
    DELETED_AT_SCHEMA,
    STATE_KEY,
    encode_ids,
    removed_ids,
)
from tap_cube.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    InaccessibleError,
    IncompleteError,
    RetriesExhaustedError,
)
from tap_cube.fetch import Page, PageGoneError, PagePipeline, RequestGate
from tap_cube.pagination import CubeNextLinkPaginator, page_body, query_pairs, remember_body
from tap_cube.seen import SeenIds

if t.TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator

    from singer_sdk.helpers.types import Context
    from singer_sdk.tap_base import Tap

#: Failures worth another try: the server or a proxy was unwell, or the network was.
RETRIABLE_ERRORS: tuple[type[Exception], ...] = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
_MAX_REDIRECTS = 5
_READ_CHUNK = 1 << 16


@dataclass(slots=True)
class _Tally:
    """What the reads of one partition amounted to."""

    delivered: int = 0
    duplicates: int = 0
    pages: int = 0


class ThrottledError(RetriableAPIError):
    """429: the server asked us to slow down, perhaps saying for how long."""

    def __init__(self, message: str, response: requests.Response) -> None:
        super().__init__(message, response)
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))


class MalformedPageError(RetriableAPIError):
    """A 200 whose body is not the JSON the endpoint returns (a proxy cut it short)."""


class ClientStatusError(FatalAPIError):
    """A 4xx answer, to be explained in terms of what the user configured."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.detail = response_detail(response)
        #: Whether the API itself answered (DRF's JSON `detail`), not the web server.
        self.from_api = self.detail != (response.reason or "no explanation given")
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


def response_detail(response: requests.Response) -> str:
    """The server's own explanation: DRF's `detail`, else a short status text."""
    try:
        body = response.json()
    except ValueError:
        return response.reason or "no explanation given"
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return t.cast("str", body["detail"])
    return response.reason or "no explanation given"


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


def decode_body(content: bytes, *, paginated: bool) -> dict[str, t.Any]:
    """Decode a list response into DRF's page shape, or fail as retriable."""
    try:
        body = msgspec.json.decode(content)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
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


class CubeStream(RESTStream[t.Any]):
    """A Cube list endpoint, read through the page pipeline.

    Subclasses set `path`, `partition_label` and, for plain JSON lists rather than DRF
    pages, `paginated = False`. Records are de-duplicated per partition on
    `record_id_field`, and coerce() fits every value to its declared type or keeps it
    in the catch-all column (tap_cube/coercion.py).
    """

    paginated: bool = True
    #: The field that identifies a record within one partition.
    record_id_field: str | None = None
    #: How a partition is named in messages: "assignment", "data owner", ...
    partition_label: str = "partition"
    #: Whether a partition answering 403 or 404 is skipped with a warning even when
    #: skip_inaccessible_assignments is off (for data some users may not see).
    optional: bool = False
    #: Whether detect_deletions applies: full lists keyed by `record_id_field`.
    tracks_deletions: bool = False

    def __init__(
        self, tap: Tap, schema: dict[str, t.Any] | None = None, *, gate: RequestGate
    ) -> None:
        super().__init__(tap=tap, schema=schema)
        # TLS verification stays on; a corporate CA bundle replaces the default one.
        self.requests_session.verify = self.config.get("ca_bundle") or True
        pool = max(10, int(self.config.get("max_concurrent_requests", 4)))
        for prefix in ("https://", "http://"):
            self.requests_session.mount(prefix, HTTPAdapter(pool_maxsize=pool))
        self._gate = gate
        if self.detects_deletions:
            self.schema["properties"].setdefault(DELETED_AT, DELETED_AT_SCHEMA)
            # A full-table state says nothing new mid-stream, and it carries every
            # partition's delivered ids: write it when the stream is done.
            self.STATE_MSG_FREQUENCY = 1 << 62
        self._pipeline: PagePipeline | None = None
        self._retries: dict[tuple[t.Any, ...], int] = {}
        self._retries_lock = threading.Lock()
        self._retry_wait = threading.local()
        self.skipped: list[str] = []
        self._page_extracted_at = datetime.now(UTC)

    # --- requests -----------------------------------------------------------------

    @property
    @override
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @cached_property
    @override
    def authenticator(self) -> APIKeyAuthenticator | BasicAuthenticator:
        if self.config.get("auth_token"):
            return APIKeyAuthenticator(
                key="Authorization", value=f"Token {self.config['auth_token']}"
            )
        return BasicAuthenticator(
            username=self.config["username"], password=self.config["password"]
        )

    @property
    def auth_method(self) -> str:
        if self.config.get("auth_token"):
            return "token authentication (auth_token)"
        return "HTTP Basic authentication (username/password)"

    @property
    @override
    def http_headers(self) -> dict[str, str]:
        return {"Accept": "application/json"}

    @property
    @override
    def timeout(self) -> float:  # type: ignore[override]  # requests takes fractions
        # JSON config numbers arrive as Decimal, which requests cannot use as a timeout.
        return float(self.config.get("request_timeout", 60))

    @override
    def get_new_paginator(self) -> CubeNextLinkPaginator:
        return self.paginator_for(self.context)

    def paginator_for(self, context: Context | None) -> CubeNextLinkPaginator:
        """The paginator of one partition's list."""
        params = query_pairs(urlencode(self.first_page_params(context), doseq=True))
        return CubeNextLinkPaginator(self.describe_partition(context), params)

    @override
    def get_url_params(self, context: Context | None, next_page_token: t.Any) -> dict[str, t.Any]:
        """The first page's parameters, or exactly those of the `next` link being followed."""
        if next_page_token:
            return dict(parse_qs(str(next_page_token), keep_blank_values=True))
        return self.first_page_params(context)

    def first_page_params(self, context: Context | None) -> dict[str, t.Any]:
        return {}

    @override
    def validate_response(self, response: requests.Response) -> None:
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

    def _send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """Send, following redirects only within the configured scheme and host.

        Credentials must never reach another host, so redirects are not left to requests.
        """
        origin = urlsplit(self.url_base)[:2]
        for _ in range(_MAX_REDIRECTS + 1):
            deadline = time.monotonic() + self.timeout
            response: requests.Response = self.requests_session.send(
                prepared, timeout=self.timeout, allow_redirects=False, stream=True
            )
            if not response.is_redirect:
                read_body(response, deadline)
                return response
            response.close()
            target = urljoin(prepared.url or "", response.headers.get("Location", ""))
            if urlsplit(target)[:2] != origin:
                msg = (
                    f"the server redirected {urlsplit(prepared.url or '').path} to "
                    f"{urlsplit(target).scheme}://{host_and_port(target)}; tap-cube "
                    "only sends credentials to the configured host. Check api_url."
                )
                raise ApiError(msg)
            prepared = prepared.copy()
            prepared.url = target
        msg = f"too many redirects for {urlsplit(prepared.url or '').path}; check api_url"
        raise ApiError(msg)

    def _request_page(self, context: Context | None, query: str | None) -> Page:
        """One attempt at one page."""
        self._gate.wait_turn()
        http_request = self.get_http_request(
            page=PageContext(stream_context=context, next_page_token=query)
        )
        prepared = self.build_prepared_request(
            method=http_request.method,
            url=http_request.url,
            params=http_request.encode_params(),
            headers=http_request.headers,
        )
        response = self._send(prepared)
        self.validate_response(response)
        body = decode_body(response.content, paginated=self.paginated)
        remember_body(response, body)
        count = body.get("count")
        return Page(
            count=count if isinstance(count, int) else None,
            records=body["results"],
            response=response,
        )

    @cached_property
    def _request_page_with_retries(self) -> t.Callable[[Context | None, str | None], Page]:
        return t.cast(
            "t.Callable[[Context | None, str | None], Page]",
            backoff.on_exception(
                self._retry_waits,
                RETRIABLE_ERRORS,
                max_tries=self.max_tries,
                jitter=None,
                # A certificate that cannot be verified will not verify on a retry either.
                giveup=lambda exc: isinstance(exc, requests.exceptions.SSLError),
                on_backoff=self._log_retry,
                logger=None,
            )(self._request_page),
        )

    @property
    def max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def _retry_waits(self) -> Generator[float, BaseException | None, None]:
        """How long to wait before each retry; the gate does the waiting.

        A 429 pauses the whole pool, for exactly its Retry-After when it gives one; other
        failures back off exponentially with full jitter. Both are capped by max_retry_wait.
        """
        cap = float(self.config.get("max_retry_wait", 300))
        delays = backoff.expo(base=2, factor=1, max_value=cap)
        next(delays)  # expo's priming value
        error = yield 0.0
        while True:
            if isinstance(error, ThrottledError):
                # Throttling concerns every request of the pool, not just this one.
                wait = min(
                    cap,
                    error.retry_after
                    if error.retry_after is not None
                    else backoff.full_jitter(next(delays)),
                )
                self._gate.pause_all(wait)
            else:
                wait = min(backoff.full_jitter(next(delays)), cap)
                self._gate.retry_after(wait)
            self._retry_wait.seconds = wait
            # backoff itself must not sleep: the gate's wait can be cancelled.
            error = yield 0.0

    def _log_retry(self, details: t.Any) -> None:
        context, query = details["args"][0], details["args"][1]
        reason = describe_failure(details.get("exception"))
        with self._retries_lock:
            key = self._partition_key(context)
            self._retries[key] = self._retries.get(key, 0) + 1
        self.logger.warning(
            "%s: retry %d of %d in %.1f s after %s on %s",
            self.name,
            details["tries"],
            self.max_tries - 1,
            getattr(self._retry_wait, "seconds", 0.0),
            reason,
            self._path_for(context, query),
        )

    def _path_for(self, context: Context | None, query: str | None) -> str:
        path = urlsplit(self.get_url(context)).path
        params = query if query is not None else urlencode(self.first_page_params(context))
        return f"{path}?{params}" if params else path

    def fetch_page(self, context: Context | None, query: str | None) -> Page:
        """One page, with retries, or an error that says what to do about it."""
        where = self.describe_partition(context)
        try:
            return self._request_page_with_retries(context, query)
        except ClientStatusError as exc:
            if exc.status == HTTPStatus.UNAUTHORIZED:
                msg = (
                    f"authentication failed with {self.auth_method}: the server answered "
                    f"401 ({exc.detail}). Check the credentials in the tap-cube settings."
                )
                raise AuthenticationError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND and query and exc.detail == "Invalid page.":
                msg = (
                    f"{where}: page ?{query} no longer exists (404 Invalid page.); rows "
                    "were removed while the list was read"
                )
                raise PageGoneError(msg) from None
            if exc.status == HTTPStatus.FORBIDDEN:
                msg = (
                    f"{where} is not accessible to this user (403 {exc.detail}). Ask "
                    f"Headshed for access or remove it from {self.partition_setting}."
                )
                raise InaccessibleError(msg, exc.status) from None
            if exc.status == HTTPStatus.NOT_FOUND and not exc.from_api and not self.optional:
                # No API view answered: the URL itself is wrong, not the id in it. (Older
                # servers lack some optional endpoints, which answer the same way.)
                msg = (
                    f"{where}: the server has no API at {self._path_for(context, query)} "
                    f"(404 {exc.detail}). Check api_url: it is the API's base URL, such as "
                    "https://<account>.headshed.com/api/v1"
                )
                raise ConfigError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND:
                msg = f"{where} not found (404 {exc.detail}). Check {self.partition_setting}."
                raise InaccessibleError(msg, exc.status) from None
            msg = (
                f"{where}: the server answered {exc.status} to "
                f"{self._path_for(context, query)}: {exc.detail}"
            )
            raise ApiError(msg) from None
        except requests.exceptions.SSLError as exc:
            raise ConfigError(self._tls_failure(exc)) from None
        except RETRIABLE_ERRORS as exc:
            msg = (
                f"{where}: giving up on {self._path_for(context, query)} after "
                f"{self.max_tries} tries; the last error was {describe_failure(exc)}. "
                "The service may be down or throttling; raise max_retries or try again later."
            )
            raise RetriesExhaustedError(msg) from None

    def _tls_failure(self, error: requests.exceptions.SSLError) -> str:
        """Why a TLS connection failed, and what the user can do about it."""
        reason = re.search(r"certificate verify failed: ([^(]+?)(?: \(|'|\)|$)", str(error))
        where = host_and_port(self.url_base)
        bundle = self.config.get("ca_bundle")
        trusted = f"the certificates in ca_bundle {bundle!r}" if bundle else "the default CAs"
        if reason:
            return (
                f"the TLS certificate of {where} could not be verified against {trusted} "
                f"({reason.group(1).strip()}). If a corporate proxy or a private authority "
                "signs it, set ca_bundle to a PEM file of that authority; verification is "
                "never turned off."
            )
        return (
            f"the TLS connection to {where} failed ({type(error).__name__}); check api_url "
            "and, behind a TLS-inspecting proxy, set ca_bundle to a PEM file of its authority."
        )

    # --- partitions and records ---------------------------------------------------

    @property
    def skips_inaccessible(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning."""
        return self.optional or bool(self.config.get("skip_inaccessible_assignments"))

    partition_setting: str = "the tap-cube settings"
    #: Reads of a partition after the first, when its list changed while it was read.
    MAX_REREADS = 3

    def describe_partition(self, context: Context | None) -> str:
        """How messages name a partition: "assignment 7", "data owner 3 (B2C)"."""
        if not context:
            return self.name
        first, *rest = context.values()
        extra = f" ({', '.join(str(value) for value in rest)})" if rest else ""
        return f"{self.partition_label} {first}{extra}"

    def planned_partitions(self) -> list[dict[str, t.Any]]:
        """The partitions whose pages may be fetched ahead, in the order they are read."""
        return list(self.partitions or [{}])

    def _partition_key(self, context: Context | None) -> tuple[t.Any, ...]:
        return tuple(context.values()) if context else ()

    @property
    def pipeline(self) -> PagePipeline:
        if self._pipeline is None:
            self._pipeline = PagePipeline(
                self.fetch_page,
                concurrency=int(self.config.get("max_concurrent_requests", 4)),
                paginator=self.paginator_for,
                gate=self._gate,
            )
            self._pipeline.plan(self.planned_partitions())
        return self._pipeline

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        if self._pipeline is not None:
            self._pipeline.close()
            self._pipeline = None

    # coerce() makes every record match the schema, cheaper than the SDK's generic
    # conformance, which walks the schema for every field of every record.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    @cached_property
    def _every_property_selected(self) -> bool:
        return all(self.mask[("properties", name)] for name in self._declared)

    @override
    def _generate_record_messages(
        self, record: dict[str, t.Any]
    ) -> Generator[RecordMessage, None, None]:
        """The SDK's record messages, without its per-field selection walk when it is moot.

        With every property selected (the usual case) the walk removes nothing, yet it
        was the largest per-record cost left; with any deselected, the SDK does it all.
        """
        if not self._every_property_selected:
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=self._page_extracted_at,
                )

    @override
    def generate_child_contexts(
        self, record: dict[str, t.Any], context: Context | None
    ) -> Iterable[Context | None]:
        # No Cube stream has children; the default still builds a context per record.
        if not self.child_streams:
            return ()
        return super().generate_child_contexts(record, context)

    @cached_property
    def _declared(self) -> frozenset[str]:
        return frozenset(self.schema.get("properties", {}))

    @cached_property
    def _coercion(self) -> RecordCoercion:
        # The schema the SCHEMA message carries: a given catalog's, else the discovered one.
        return RecordCoercion(self.effective_schema.get("properties", {}))

    def coerce(self, record: dict[str, t.Any]) -> dict[str, t.Any]:
        """The record, every value of its declared type or kept in the catch-all column."""
        return self._coercion(record)

    def discovery_declares(self, field: str) -> bool:
        """Whether discovering the schema again would give `field` a column of its own."""
        return False

    def _report_unfit(self, context: Context | None) -> None:
        """One warning per field whose values fit no column in this partition."""
        where = self.describe_partition(context)
        where = self.name if where == self.name else f"{self.name}: {where}"
        for line in self._coercion.report(self.discovery_declares):
            self.logger.warning("%s: %s", where, line)

    @override
    def get_records(self, context: Context | None) -> Iterable[dict[str, t.Any]]:
        try:
            yield from self.read_partition(context)
        except BaseException:
            self.close()  # a failed or abandoned run leaves no worker behind
            raise
        finally:
            self._report_unfit(context)
        if self._is_last_partition(context):
            self.close()
            everything_skipped = len(self.skipped) == len(self.partitions or [{}])
            if everything_skipped and not self.optional:
                msg = (
                    f"{self.name}: nothing was accessible: {', '.join(self.skipped)} answered "
                    f"403 or 404. Check {self.partition_setting} against what this user may "
                    "read, and that api_url is your account's."
                )
                raise InaccessibleError(msg, 0)
            if self.skipped:
                self.logger.warning(
                    "%s: skipped because not accessible: %s", self.name, ", ".join(self.skipped)
                )

    def record_identity(self) -> Callable[[dict[str, t.Any]], object]:
        """What identifies a record within its partition (None: the record lacks it).

        A fresh function for each read of a partition, for identities that depend on the
        records before.
        """
        field = self.record_id_field
        return lambda record: record.get(field) if field else None

    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        """The records of one partition, each exactly once, or an error that says why not.

        DRF numbers pages over a list that may change while it is read: a removed row
        shifts later rows onto pages already read, and they are never served. A read
        is complete only when every page gave the same count and that many distinct
        records came back; otherwise the list is read again from its first page,
        skipping records already emitted, up to MAX_REREADS times.
        """
        started = time.monotonic()
        where = self.describe_partition(context)
        tally = _Tally()
        with contextlib.ExitStack() as ids:
            emitted = ids.enter_context(SeenIds())
            for attempt in range(self.MAX_REREADS + 1):
                # The first read checks ids against what was emitted; later ones also
                # need to know what they served, since most of it was emitted before.
                served = emitted if attempt == 0 else ids.enter_context(SeenIds())
                if attempt:
                    self.pipeline.read_again(context or {})
                try:
                    problem = yield from self._read_once(context, emitted, served, tally)
                except InaccessibleError as exc:
                    if tally.pages or not self.skips_inaccessible:
                        raise
                    self.logger.warning("%s; skipping it", exc)
                    self.skipped.append(where)
                    return
                if problem is None:
                    break
                if attempt < self.MAX_REREADS:
                    self.logger.warning(
                        "%s: the list changed while it was read (this read %s); reading it "
                        "again from page 1, skipping the %d records already emitted",
                        where,
                        problem,
                        tally.delivered,
                    )
            else:
                msg = (
                    f"{where}: the list kept changing while it was read; read "
                    f"{self.MAX_REREADS + 1} times, the last read {problem}. Records may be "
                    "missing, so the run stops rather than load an incomplete list: run it "
                    "again later, and report it to Headshed if it persists."
                )
                raise IncompleteError(msg)
            if self.detects_deletions:
                yield from self._deletions(context, served, emitted)
        if tally.duplicates:
            self.logger.warning(
                "%s: %d records were served twice (rows shifted between pages); each was "
                "emitted once",
                where,
                tally.duplicates,
            )
        self.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s",
            self.name,
            where,
            tally.delivered,
            tally.pages,
            self._retries.get(self._partition_key(context), 0),
            time.monotonic() - started,
        )

    def _read_once(
        self, context: Context | None, emitted: SeenIds, served: SeenIds, tally: _Tally
    ) -> Generator[dict[str, t.Any], None, str | None]:
        """One read of a partition from its first page; returns why it was incomplete.

        `served` collects the ids this read served; on the first read it is `emitted`.
        """
        where = self.describe_partition(context)
        record_id = self.record_identity()
        count: int | None = None
        changed_to: int | None = None
        distinct = pages = 0
        page_limit = page_size = 0
        try:
            for page in self.pipeline.pages(context or {}):
                # The records of a page were extracted together, when it arrived.
                self._page_extracted_at = datetime.now(UTC)
                pages += 1
                tally.pages += 1
                if pages == 1:
                    count = page.count
                    page_size = len(page.records)
                    if count is not None and page_size:
                        # Slack for rows added while reading; a loop exceeds it.
                        page_limit = 2 * math.ceil(count / page_size) + 2
                elif page.count != count and changed_to is None:
                    changed_to = page.count
                if page_limit and pages > page_limit:
                    msg = (
                        f"{where}: the server sent more pages than its count of {count} "
                        f"allows ({pages} pages of up to {page_size} rows); stopping "
                        "instead of paging forever. Report it to Headshed."
                    )
                    raise ApiError(msg)
                if not page.records and page_body(page.response).get("next"):
                    return f"got an empty page {pages} that links to a next one"
                for record in page.records:
                    key = record_id(record)
                    if key is None:
                        msg = (
                            f"{where}: the server sent a record without "
                            f"{self.record_id_field or 'its key'}; it cannot be keyed, so "
                            "the run stops. Report it to Headshed."
                        )
                        raise ApiError(msg)
                    if not served.add(key):
                        tally.duplicates += 1
                        continue
                    distinct += 1
                    if served is not emitted and not emitted.add(key):
                        continue
                    tally.delivered += 1
                    yield self.coerce(record)
        except PageGoneError:
            return f"ended at page {pages + 1}, which no longer exists (404 Invalid page.)"
        if not self.paginated or count is None:
            return None
        if changed_to is not None:
            return f"saw the count change from {count} to {changed_to}"
        if distinct != count:
            return f"served {distinct} of the {count} records its count announced"
        return None

    @cached_property
    def detects_deletions(self) -> bool:
        return self.tracks_deletions and bool(self.config.get("detect_deletions"))

    def _deletions(
        self, context: Context | None, served: SeenIds, emitted: SeenIds
    ) -> Iterator[dict[str, t.Any]]:
        """A deletion record for each id delivered before but not served by this read.

        Only called once the partition was read completely; its state then remembers
        what this read served, for the next run.
        """
        field = str(self.record_id_field)
        types = self.schema["properties"][field].get("type", [])
        as_number = "integer" in ([types] if isinstance(types, str) else types)
        state = self.get_context_state(context)
        deleted_at = datetime.now(UTC).isoformat()
        deleted = 0
        for key in removed_ids(state.get(STATE_KEY), served, emitted):
            deleted += 1
            yield {field: int(key) if as_number else str(key), DELETED_AT: deleted_at}
        state[STATE_KEY] = encode_ids(served)
        if deleted:
            self.logger.info(
                "%s: %d records are no longer served; marked deleted",
                self.describe_partition(context),
                deleted,
            )

    def _is_last_partition(self, context: Context | None) -> bool:
        partitions = self.partitions
        return not partitions or partitions[-1] == context
