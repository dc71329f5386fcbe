"""The Cube REST client: one place for auth, safe requests, retries and error messages.

A stream says what to request (tap_cube/streams/cube_stream.py); the client gets it: it sends
credentials to the configured host only, reads the answer within request_timeout,
retries what is worth retrying, and turns every failure into a message that says what
to fix.
"""

from __future__ import annotations

import re
import threading
import time
import typing as t
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from http import HTTPStatus
from urllib.parse import parse_qsl, urljoin, urlsplit

import backoff
import requests
from requests.adapters import HTTPAdapter
from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
from singer_sdk.exceptions import RetriableAPIError

from tap_cube.api.page import Page
from tap_cube.api.responses import (
    ClientStatusError,
    ThrottledError,
    UndecodableBodyError,
    check_status,
    decode_body,
    describe_failure,
    host_and_port,
    read_body,
)
from tap_cube.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    InaccessibleError,
    PageGoneError,
    RetriesExhaustedError,
)
from tap_cube.settings import Settings

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Generator, Mapping

    from tap_cube.api.fetch import RequestGate

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


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One page to get, and how messages name it."""

    #: The authenticated request, built by the stream (RESTStream.get_http_request).
    prepared: requests.PreparedRequest
    #: The partition as messages name it ("assignment 7"), and as retries are counted.
    where: str
    #: The page's path and query, as messages show it.
    path: str
    #: The query of a page after the first (None for the first page).
    query: str | None


class CubeClient:
    """The requests of one stream: its session and credentials, redirects, retries, wording."""

    def __init__(
        self,
        config: Mapping[str, t.Any],
        session: requests.Session,
        gate: RequestGate,
        *,
        stream_name: str,
        logger: logging.Logger,
        paginated: bool,
        optional: bool,
        partition_setting: str,
    ) -> None:
        """A client for the list of `stream_name`, which answers DRF pages when
        `paginated`, may be missing on older servers when `optional`, and whose
        partitions are chosen by `partition_setting` (for messages)."""
        self._stream_name = stream_name
        self._logger = logger
        self._paginated = paginated
        self._optional = optional
        self._partition_setting = partition_setting
        self._settings = Settings(config)
        self._gate = gate
        self.session = session
        # TLS verification stays on; a corporate CA bundle replaces the default one.
        session.verify = self._settings.ca_bundle or True
        # A connection for every request the limit may ever let go at once, kept open
        # between pages: none is opened and dropped per page.
        pool = max(10, gate.limit.ceiling)
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_maxsize=pool))
        self.url_base = self._settings.api_url.rstrip("/")
        # JSON config numbers arrive as Decimal, which requests cannot use as a timeout.
        self.timeout = self._settings.request_timeout
        self.max_tries = self._settings.max_retries + 1
        self._retries: dict[str, int] = {}
        self._throttled: dict[str, int] = {}
        self._retries_lock = threading.Lock()
        self._retry_wait = threading.local()

    @cached_property
    def authenticator(self) -> APIKeyAuthenticator | BasicAuthenticator:
        settings = self._settings
        if settings.auth_token:
            return APIKeyAuthenticator(key="Authorization", value=f"Token {settings.auth_token}")
        return BasicAuthenticator(username=str(settings.username), password=str(settings.password))

    @property
    def auth_method(self) -> str:
        if self._settings.auth_token:
            return "token authentication (auth_token)"
        return "HTTP Basic authentication (username/password)"

    def retries_of(self, where: str) -> int:
        """How many retries the pages of a partition (named as in PageRequest.where) took."""
        return self._retries.get(where, 0)

    def throttled_of(self, where: str) -> int:
        """How many of a partition's requests the server answered with 429."""
        return self._throttled.get(where, 0)

    def send(self, prepared: requests.PreparedRequest) -> requests.Response:
        """Send, following redirects only within the configured scheme and host.

        Credentials must never reach another host, so redirects are not left to requests.
        """
        origin = urlsplit(self.url_base)[:2]
        for _ in range(_MAX_REDIRECTS + 1):
            deadline = time.monotonic() + self.timeout
            response: requests.Response = self.session.send(
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

    def _request_page(self, request: PageRequest) -> Page:
        """One attempt at one page."""
        with self._gate.turn(overloaded=says_overloaded):
            response = self.send(request.prepared)
            try:
                check_status(response)
            except ThrottledError:
                with self._retries_lock:
                    self._throttled[request.where] = self._throttled.get(request.where, 0) + 1
                raise
        body = decode_body(
            response.content,
            paginated=self._paginated,
            content_type=response.headers.get("Content-Type"),
        )
        return Page(body, arrived_at=datetime.now(UTC))

    @cached_property
    def _request_page_with_retries(self) -> t.Callable[[PageRequest], Page]:
        return t.cast(
            "t.Callable[[PageRequest], Page]",
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

    def _retry_waits(self) -> Generator[float, BaseException | None, None]:
        """How long to wait before each retry; the gate does the waiting.

        A 429 pauses the whole pool, for exactly its Retry-After when it gives one; other
        failures back off exponentially with full jitter. Both are capped by max_retry_wait.
        """
        cap = self._settings.max_retry_wait
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
        request: PageRequest = details["args"][0]
        reason = describe_failure(details.get("exception"))
        with self._retries_lock:
            self._retries[request.where] = self._retries.get(request.where, 0) + 1
        self._logger.warning(
            "%s: retry %d of %d in %.1f s after %s on %s",
            self._stream_name,
            details["tries"],
            self.max_tries - 1,
            getattr(self._retry_wait, "seconds", 0.0),
            reason,
            request.path,
        )

    def fetch_page(self, request: PageRequest) -> Page:
        """One page, with retries, or an error that says what to do about it."""
        where, query, path = request.where, request.query, request.path
        try:
            return self._request_page_with_retries(request)
        except ClientStatusError as exc:
            if exc.status == HTTPStatus.UNAUTHORIZED:
                msg = (
                    f"authentication failed with {self.auth_method}: the server answered "
                    f"401 ({exc.detail}). Check the credentials in the tap-cube settings."
                )
                raise AuthenticationError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND and exc.from_api and _asks_a_page(query):
                # The API's own 404 (a DRF body, in whatever language) for a numbered page
                # of a list whose first page it served: that page is gone.
                msg = (
                    f"{where}: page ?{query} no longer exists (404 {exc.detail}); rows "
                    "were removed while the list was read"
                )
                raise PageGoneError(msg) from None
            if exc.status == HTTPStatus.FORBIDDEN:
                msg = (
                    f"{where} is not accessible to this user (403 {exc.detail}). Ask "
                    f"Headshed for access or remove it from {self._partition_setting}."
                )
                raise InaccessibleError(msg, exc.status) from None
            if exc.status == HTTPStatus.NOT_FOUND and not exc.from_api and not self._optional:
                # No API view answered: the URL itself is wrong, not the id in it. (Older
                # servers lack some optional endpoints, which answer the same way.)
                msg = (
                    f"{where}: the server has no API at {path} "
                    f"(404 {exc.detail}). Check api_url: it is the API's base URL, such as "
                    "https://<account>.headshed.com/api/v1"
                )
                raise ConfigError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND:
                msg = f"{where} not found (404 {exc.detail}). Check {self._partition_setting}."
                raise InaccessibleError(msg, exc.status) from None
            msg = f"{where}: the server answered {exc.status} to {path}: {exc.detail}"
            raise ApiError(msg) from None
        except UndecodableBodyError as exc:
            msg = (
                f"{where}: the answer to {path} {exc}; asked again it would be the same, "
                "so the run stops. Report it to Headshed."
            )
            raise ApiError(msg) from None
        except requests.exceptions.SSLError as exc:
            raise ConfigError(self._tls_failure(exc)) from None
        except RETRIABLE_ERRORS as exc:
            msg = (
                f"{where}: giving up on {path} after "
                f"{self.max_tries} tries; the last error was {describe_failure(exc)}. "
                "The service may be down or throttling; raise max_retries or try again later."
            )
            raise RetriesExhaustedError(msg) from None

    def _tls_failure(self, error: requests.exceptions.SSLError) -> str:
        """Why a TLS connection failed, and what the user can do about it."""
        reason = re.search(r"certificate verify failed: ([^(]+?)(?: \(|'|\)|$)", str(error))
        where = host_and_port(self.url_base)
        bundle = self._settings.ca_bundle
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


def says_overloaded(error: BaseException) -> bool:
    """Whether a failed request says the server has more than it can serve: a 429, a 503
    or 504, a timeout, or a connection reset or cut short."""
    if isinstance(error, ThrottledError):
        return True
    if isinstance(error, RetriableAPIError):
        status = error.response.status_code if error.response is not None else None
        return status in (HTTPStatus.SERVICE_UNAVAILABLE, HTTPStatus.GATEWAY_TIMEOUT)
    return isinstance(
        error,
        requests.exceptions.Timeout
        | requests.exceptions.ConnectionError
        | requests.exceptions.ChunkedEncodingError
        | ConnectionResetError,
    ) and not isinstance(error, requests.exceptions.SSLError)


def _asks_a_page(query: str | None) -> bool:
    """Whether a request's query names a page number (DRF's `page`)."""
    return bool(query) and any(name == "page" for name, _ in parse_qsl(query or ""))
