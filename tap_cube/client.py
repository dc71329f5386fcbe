"""The Cube REST client: one place for auth, safe requests, retries and error messages.

A stream says what to request (tap_cube/cube_stream.py); the client gets it: it sends
credentials to the configured host only, reads the answer within request_timeout,
retries what is worth retrying, and turns every failure into a message that says what
to fix.
"""

from __future__ import annotations

import re
import threading
import time
import typing as t
from functools import cached_property
from http import HTTPStatus
from urllib.parse import urljoin, urlsplit

import backoff
import requests
from requests.adapters import HTTPAdapter
from singer_sdk.authenticators import APIKeyAuthenticator, BasicAuthenticator
from singer_sdk.exceptions import RetriableAPIError

from tap_cube.errors import (
    ApiError,
    AuthenticationError,
    ConfigError,
    InaccessibleError,
    RetriesExhaustedError,
)
from tap_cube.fetch import Page, PageGoneError
from tap_cube.pagination import remember_body
from tap_cube.responses import (
    ClientStatusError,
    ThrottledError,
    check_status,
    decode_body,
    describe_failure,
    host_and_port,
    read_body,
)

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Generator, Mapping

    from singer_sdk.helpers.types import Context

    from tap_cube.fetch import RequestGate

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


class Endpoint(t.Protocol):
    """The list a client reads, as a stream describes it."""

    @property
    def name(self) -> str: ...
    @property
    def logger(self) -> logging.Logger: ...
    @property
    def paginated(self) -> bool: ...
    @property
    def optional(self) -> bool: ...
    @property
    def partition_setting(self) -> str: ...

    def describe_partition(self, context: Context | None) -> str: ...

    def page_path(self, context: Context | None, query: str | None) -> str:
        """The path and query of a page, as messages show it."""
        ...

    def page_request(self, context: Context | None, query: str | None) -> requests.PreparedRequest:
        """The authenticated request for a page, built on the client's session."""
        ...


class CubeClient:
    """The requests of one stream: its session and credentials, redirects, retries, wording."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: Mapping[str, t.Any],
        session: requests.Session,
        gate: RequestGate,
    ) -> None:
        self._endpoint = endpoint
        self._config = config
        self._gate = gate
        self.session = session
        # TLS verification stays on; a corporate CA bundle replaces the default one.
        session.verify = config.get("ca_bundle") or True
        pool = max(10, int(config.get("max_concurrent_requests", 4)))
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_maxsize=pool))
        self.url_base = str(config["api_url"]).rstrip("/")
        # JSON config numbers arrive as Decimal, which requests cannot use as a timeout.
        self.timeout = float(config.get("request_timeout", 60))
        self.max_tries = int(config.get("max_retries", 8)) + 1
        self._retries: dict[tuple[t.Any, ...], int] = {}
        self._retries_lock = threading.Lock()
        self._retry_wait = threading.local()

    @cached_property
    def authenticator(self) -> APIKeyAuthenticator | BasicAuthenticator:
        if self._config.get("auth_token"):
            return APIKeyAuthenticator(
                key="Authorization", value=f"Token {self._config['auth_token']}"
            )
        return BasicAuthenticator(
            username=self._config["username"], password=self._config["password"]
        )

    @property
    def auth_method(self) -> str:
        if self._config.get("auth_token"):
            return "token authentication (auth_token)"
        return "HTTP Basic authentication (username/password)"

    def retries_of(self, context: Context | None) -> int:
        """How many retries a partition's pages took so far."""
        return self._retries.get(_partition_key(context), 0)

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

    def _request_page(self, context: Context | None, query: str | None) -> Page:
        """One attempt at one page."""
        self._gate.wait_turn()
        response = self.send(self._endpoint.page_request(context, query))
        check_status(response)
        body = decode_body(response.content, paginated=self._endpoint.paginated)
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

    def _retry_waits(self) -> Generator[float, BaseException | None, None]:
        """How long to wait before each retry; the gate does the waiting.

        A 429 pauses the whole pool, for exactly its Retry-After when it gives one; other
        failures back off exponentially with full jitter. Both are capped by max_retry_wait.
        """
        cap = float(self._config.get("max_retry_wait", 300))
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
            key = _partition_key(context)
            self._retries[key] = self._retries.get(key, 0) + 1
        self._endpoint.logger.warning(
            "%s: retry %d of %d in %.1f s after %s on %s",
            self._endpoint.name,
            details["tries"],
            self.max_tries - 1,
            getattr(self._retry_wait, "seconds", 0.0),
            reason,
            self._endpoint.page_path(context, query),
        )

    def fetch_page(self, context: Context | None, query: str | None) -> Page:
        """One page, with retries, or an error that says what to do about it."""
        endpoint = self._endpoint
        where = endpoint.describe_partition(context)
        try:
            return self._request_page_with_retries(context, query)
        except ClientStatusError as exc:
            if exc.status == HTTPStatus.UNAUTHORIZED:
                msg = (
                    f"authentication failed with {self.auth_method}: the server answered "
                    f"401 ({exc.detail}). Check the credentials in the tap-cube settings."
                )
                raise AuthenticationError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND and query and exc.from_api:
                # The API itself says a later page is not there: rows were removed while
                # paging (DRF's "Invalid page."), or the partition went. Reading again
                # from the first page tells which, whatever language `detail` is in.
                msg = (
                    f"{where}: page ?{query} no longer exists (404 {exc.detail}); rows "
                    "were removed while the list was read"
                )
                raise PageGoneError(msg) from None
            if exc.status == HTTPStatus.FORBIDDEN:
                msg = (
                    f"{where} is not accessible to this user (403 {exc.detail}). Ask "
                    f"Headshed for access or remove it from {endpoint.partition_setting}."
                )
                raise InaccessibleError(msg, exc.status) from None
            if exc.status == HTTPStatus.NOT_FOUND and not exc.from_api and not endpoint.optional:
                # No API view answered: the URL itself is wrong, not the id in it. (Older
                # servers lack some optional endpoints, which answer the same way.)
                msg = (
                    f"{where}: the server has no API at {endpoint.page_path(context, query)} "
                    f"(404 {exc.detail}). Check api_url: it is the API's base URL, such as "
                    "https://<account>.headshed.com/api/v1"
                )
                raise ConfigError(msg) from None
            if exc.status == HTTPStatus.NOT_FOUND:
                msg = f"{where} not found (404 {exc.detail}). Check {endpoint.partition_setting}."
                raise InaccessibleError(msg, exc.status) from None
            msg = (
                f"{where}: the server answered {exc.status} to "
                f"{endpoint.page_path(context, query)}: {exc.detail}"
            )
            raise ApiError(msg) from None
        except requests.exceptions.SSLError as exc:
            raise ConfigError(self._tls_failure(exc)) from None
        except RETRIABLE_ERRORS as exc:
            msg = (
                f"{where}: giving up on {endpoint.page_path(context, query)} after "
                f"{self.max_tries} tries; the last error was {describe_failure(exc)}. "
                "The service may be down or throttling; raise max_retries or try again later."
            )
            raise RetriesExhaustedError(msg) from None

    def _tls_failure(self, error: requests.exceptions.SSLError) -> str:
        """Why a TLS connection failed, and what the user can do about it."""
        reason = re.search(r"certificate verify failed: ([^(]+?)(?: \(|'|\)|$)", str(error))
        where = host_and_port(self.url_base)
        bundle = self._config.get("ca_bundle")
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


def _partition_key(context: Context | None) -> tuple[t.Any, ...]:
    return tuple(context.values()) if context else ()
