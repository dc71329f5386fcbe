"""The Cube REST client: one place for auth, safe requests, retries and error messages."""

from __future__ import annotations

import email.utils
import threading
import time
import typing as t
from functools import cached_property
from http import HTTPStatus
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import backoff
import msgspec
import requests
from requests.adapters import HTTPAdapter
from singer_sdk import RESTStream
from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._util import utc_now
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams.rest import PageContext
from typing_extensions import override

from tap_cube.coercion import RecordCoercion
from tap_cube.errors import (
    ApiError,
    AuthenticationError,
    InaccessibleError,
    RetriesExhaustedError,
)
from tap_cube.fetch import Page, PageGoneError, PagePipeline, RequestGate
from tap_cube.pagination import CubeNextLinkPaginator, query_pairs, remember_body
from tap_cube.seen import SeenIds

if t.TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator

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
    if isinstance(error, MalformedPageError):
        return str(error)
    return type(error).__name__


def decode_body(content: bytes, *, paginated: bool) -> dict[str, t.Any]:
    """Decode a list response into DRF's page shape, or fail as retriable."""
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError as exc:
        msg = f"invalid JSON in a 200 response ({len(content)} bytes)"
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
        self._pipeline: PagePipeline | None = None
        self._retries: dict[tuple[t.Any, ...], int] = {}
        self._retries_lock = threading.Lock()
        self._retry_wait = threading.local()
        self.skipped: list[str] = []
        self._page_extracted_at = utc_now()

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
            response: requests.Response = self.requests_session.send(
                prepared, timeout=self.timeout, allow_redirects=False
            )
            if not response.is_redirect:
                return response
            target = urljoin(prepared.url or "", response.headers.get("Location", ""))
            if urlsplit(target)[:2] != origin:
                msg = (
                    f"the server redirected {urlsplit(prepared.url or '').path} to "
                    f"{urlsplit(target).scheme}://{urlsplit(target).hostname}; tap-cube only "
                    "sends credentials to the configured host. Check api_url."
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
            if exc.status == HTTPStatus.NOT_FOUND:
                msg = f"{where} not found (404 {exc.detail}). Check {self.partition_setting}."
                raise InaccessibleError(msg, exc.status) from None
            msg = (
                f"{where}: the server answered {exc.status} to "
                f"{self._path_for(context, query)}: {exc.detail}"
            )
            raise ApiError(msg) from None
        except RETRIABLE_ERRORS as exc:
            msg = (
                f"{where}: giving up on {self._path_for(context, query)} after "
                f"{self.max_tries} tries; the last error was {describe_failure(exc)}. "
                "The service may be down or throttling; raise max_retries or try again later."
            )
            raise RetriesExhaustedError(msg) from None

    # --- partitions and records ---------------------------------------------------

    @property
    def skips_inaccessible(self) -> bool:
        """Whether a partition answering 403 or 404 is skipped with a warning."""
        return self.optional or bool(self.config.get("skip_inaccessible_assignments"))

    partition_setting: str = "the tap-cube settings"

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
                describe=self.describe_partition,
                paginator=self.paginator_for,
                warn=self.logger.warning,
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
            if self.skipped:
                self.logger.warning(
                    "%s: skipped because not accessible: %s", self.name, ", ".join(self.skipped)
                )

    def read_partition(self, context: Context | None) -> Iterator[dict[str, t.Any]]:
        """The records of one partition, each once, with a summary and completeness checks."""
        started = time.monotonic()
        where = self.describe_partition(context)
        seen = SeenIds()
        id_field = self.record_id_field
        delivered = duplicates = pages = 0
        first_count: int | None = None
        last_count: int | None = None
        try:
            for page in self.pipeline.pages(context or {}):
                # The records of a page were extracted together, when it arrived.
                self._page_extracted_at = utc_now()
                pages += 1
                if first_count is None:
                    first_count = page.count
                last_count = page.count
                for record in page.records:
                    if id_field is not None and not seen.add(record.get(id_field)):
                        if record.get(id_field) is None:
                            msg = (
                                f"{where}: the server sent a record without {id_field}; "
                                "it cannot be keyed, so the run stops. Report it to Headshed."
                            )
                            raise ApiError(msg)
                        duplicates += 1
                        continue
                    delivered += 1
                    yield self.coerce(record)
        except InaccessibleError as exc:
            if pages or not self.skips_inaccessible:
                raise
            self.logger.warning("%s; skipping it", exc)
            self.skipped.append(where)
            return
        if duplicates:
            self.logger.warning(
                "%s: %d records were served twice (rows shifted between pages); each was "
                "emitted once",
                where,
                duplicates,
            )
        counts = {first_count, last_count} - {None}
        if self.paginated and counts and counts != {delivered}:
            self.logger.warning(
                "%s: delivered %d records but the server counted %d at the start "
                "(%d at the end); rows were added or removed while the list was read",
                where,
                delivered,
                first_count,
                last_count,
            )
        self.logger.info(
            "%s: %s done: %d records, %d pages, %d retries, %.1f s",
            self.name,
            where,
            delivered,
            pages,
            self._retries.get(self._partition_key(context), 0),
            time.monotonic() - started,
        )

    def _is_last_partition(self, context: Context | None) -> bool:
        partitions = self.partitions
        return not partitions or partitions[-1] == context
