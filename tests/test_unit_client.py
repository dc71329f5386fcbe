"""CubeClient on its own, against a local HTTP server that answers as scripted."""

from __future__ import annotations

import json
import logging
import time
import typing as t
from datetime import UTC, datetime

import pytest
import requests

from tap_cube.api.client import CubeClient, PageRequest
from tap_cube.api.fetch import RequestGate
from tap_cube.errors import (
    ApiError,
    AuthenticationError,
    Cancelled,
    ConfigError,
    InaccessibleError,
    PageGoneError,
    RetriesExhaustedError,
)
from tests.conftest import Answer, LocalServer

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TOKEN = "tok-3f9a7c21d4e8b6a0"
LIST = "/api/v1/assignments/7/customers/"
LOGGER = logging.getLogger("test")


def drf(body: object, status: int = 200, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


def html(status: int, text: str) -> Answer:
    return status, {"Content-Type": "text/html"}, f"<h1>{text}</h1>".encode()


class ScriptedServer(LocalServer):
    """Answers each path (with its query) from a list, the last answer repeating;
    any other path gets the web server's own 404. Records what each request carried."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = {}
        self.received: list[tuple[str, dict[str, str]]] = []
        super().__init__(self._answer)

    def _answer(self, path: str, headers: dict[str, str]) -> Answer:
        self.received.append((path, headers))
        script = self.answers.get(path)
        if not script:
            return html(404, "Not Found")
        return script.pop(0) if len(script) > 1 else script[0]

    def paths(self) -> list[str]:
        return [path for path, _ in self.received]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    """The configured server, and another host that must never get a request."""
    cube, elsewhere = ScriptedServer(), ScriptedServer()
    yield cube, elsewhere
    cube.stop()
    elsewhere.stop()


@pytest.fixture
def cube(servers: tuple[ScriptedServer, ScriptedServer]) -> ScriptedServer:
    for server in servers:
        server.answers.clear()
        server.received.clear()
    return servers[0]


@pytest.fixture
def elsewhere(servers: tuple[ScriptedServer, ScriptedServer], cube) -> ScriptedServer:
    return servers[1]


def settings(cube: ScriptedServer, **overrides: object) -> dict[str, t.Any]:
    """Every setting the client reads, given explicitly."""
    return {
        "api_url": f"{cube.origin}/api/v1",
        "auth_token": TOKEN,
        "request_timeout": 10,
        "max_retries": 2,
        "max_retry_wait": 0.01,
        "max_concurrent_requests": 1,
        "ca_bundle": None,
        **overrides,
    }


@pytest.fixture
def make_client(cube) -> Iterator[Callable[..., CubeClient]]:
    sessions: list[requests.Session] = []

    def make(
        gate: RequestGate | None = None, *, paginated: bool = True, optional: bool = False, **config
    ) -> CubeClient:
        session = requests.Session()
        sessions.append(session)
        return CubeClient(
            settings(cube, **config),
            session,
            gate or RequestGate(),
            stream_name="customers",
            logger=LOGGER,
            paginated=paginated,
            optional=optional,
            partition_setting="assignment_ids",
        )

    yield make
    for session in sessions:
        session.close()


def page_request(
    cube: ScriptedServer,
    path: str = LIST,
    query: str | None = None,
    *,
    auth: tuple[str, str] | None = None,
) -> PageRequest:
    url = f"{cube.origin}{path}" + (f"?{query}" if query else "")
    headers = {} if auth else {"Authorization": f"Token {TOKEN}"}
    prepared = requests.Request("GET", url, headers=headers, auth=auth).prepare()
    shown = path.removeprefix("/api/v1") + (f"?{query}" if query else "")
    return PageRequest(prepared, "assignment 7", shown, query)


def failure(client: CubeClient, request: PageRequest, kind: type[Exception]) -> str:
    """The message of the error fetching `request` ends in; it is one line, token-free."""
    with pytest.raises(kind) as raised:
        client.fetch_page(request)
    message = str(raised.value)
    assert "\n" not in message
    assert TOKEN not in message
    return message


PAGE = {
    "count": 3,
    "next": "http://internal:8000/api/v1/assignments/7/customers/?page=2",
    "previous": None,
    "results": [{"crm__customer_id": "1"}, {"crm__customer_id": "2"}],
}


def test_a_page_is_decoded(cube, make_client):
    cube.answers[LIST] = [drf(PAGE)]
    client = make_client()
    before = datetime.now(UTC)
    page = client.fetch_page(page_request(cube))
    assert page.body == PAGE
    assert page.count == 3
    assert page.records == PAGE["results"]
    assert page.next_url == PAGE["next"]
    assert page.unusable_link is None
    assert before <= page.arrived_at <= datetime.now(UTC)
    # The request reached the configured host, with its credentials.
    assert cube.paths() == [LIST]
    assert cube.received[0][1]["Authorization"] == f"Token {TOKEN}"
    assert client.retries_of("assignment 7") == 0


def test_a_plain_list_is_decoded_as_one_page(cube, make_client):
    path = "/api/v1/assignments/7/custom_fields/"
    cube.answers[path] = [drf([{"id": 1}, {"id": 2}])]
    page = make_client(paginated=False).fetch_page(page_request(cube, path))
    assert page.records == [{"id": 1}, {"id": 2}]
    assert page.count == 2
    assert page.next_url is None


def test_a_later_page_is_asked_for_by_its_query(cube, make_client):
    cube.answers[f"{LIST}?page=2"] = [drf({**PAGE, "next": None})]
    page = make_client().fetch_page(page_request(cube, query="page=2"))
    assert page.next is None
    assert cube.paths() == [f"{LIST}?page=2"]


def test_401_names_the_token_authentication(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "Invalid token."}, 401)]
    message = failure(make_client(), page_request(cube), AuthenticationError)
    assert message.startswith("authentication failed with token authentication (auth_token)")
    assert "401 (Invalid token.)" in message


def test_401_names_basic_authentication(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "Invalid username/password."}, 401)]
    client = make_client(auth_token=None, username="someone", password="pw-9c1e7a55b2")
    request = page_request(cube, auth=("someone", "pw-9c1e7a55b2"))
    message = failure(client, request, AuthenticationError)
    assert "HTTP Basic authentication (username/password)" in message
    assert "pw-9c1e7a55b2" not in message


def test_403_is_inaccessible(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "You do not have permission."}, 403)]
    client = make_client()
    with pytest.raises(InaccessibleError) as raised:
        client.fetch_page(page_request(cube))
    assert raised.value.status == 403
    message = str(raised.value)
    assert message.startswith("assignment 7 is not accessible to this user (403 You do not")
    assert "assignment_ids" in message
    assert TOKEN not in message


def test_an_api_404_of_a_numbered_page_is_a_page_gone(cube, make_client):
    cube.answers[f"{LIST}?page=9"] = [drf({"detail": "Invalid page."}, 404)]
    message = failure(make_client(), page_request(cube, query="page=9"), PageGoneError)
    assert message.startswith("assignment 7: page ?page=9 no longer exists (404 Invalid page.)")


def test_an_api_404_of_a_first_page_is_an_inaccessible_partition(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "Not found."}, 404)]
    client = make_client()
    with pytest.raises(InaccessibleError) as raised:
        client.fetch_page(page_request(cube))
    assert raised.value.status == 404
    assert str(raised.value) == "assignment 7 not found (404 Not found.). Check assignment_ids."


def test_a_404_from_no_api_names_api_url(cube, make_client):
    # Nothing scripted: the web server's own 404 page, no DRF body.
    message = failure(make_client(), page_request(cube, "/nothing/here/"), ConfigError)
    assert "has no API at /nothing/here/" in message
    assert "Check api_url" in message


def test_a_404_from_no_api_of_an_optional_list_is_inaccessible(cube, make_client):
    # Older servers lack optional endpoints; that is no configuration error.
    client = make_client(optional=True)
    with pytest.raises(InaccessibleError):
        client.fetch_page(page_request(cube, "/api/v1/assignments/7/callflow_customers/"))


def test_another_client_error_is_an_api_error(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "Bad filter."}, 400)]
    message = failure(make_client(), page_request(cube), ApiError)
    assert message == (
        "assignment 7: the server answered 400 to /assignments/7/customers/: Bad filter."
    )


@pytest.mark.parametrize(
    "trouble",
    [
        html(500, "Internal Server Error"),
        html(502, "Bad Gateway"),
        drf({"detail": "Slow down."}, 429, **{"Retry-After": "0"}),
        (200, {"Content-Type": "application/json"}, b'{"count": 3, "results": [{"a"'),
    ],
)
def test_a_failure_then_a_page_is_retried_and_counted(cube, make_client, caplog, trouble):
    cube.answers[LIST] = [trouble, drf(PAGE)]
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="test"):
        page = client.fetch_page(page_request(cube))
    assert page.body == PAGE
    assert cube.paths() == [LIST, LIST]
    assert client.retries_of("assignment 7") == 1
    assert client.retries_of("assignment 8") == 0
    retried = [m for m in caplog.messages if "retry 1 of 2" in m]
    assert len(retried) == 1
    assert retried[0].startswith("customers: retry 1 of 2 in ")
    assert retried[0].endswith("on /assignments/7/customers/")
    assert TOKEN not in retried[0]


def test_a_429_holds_the_retry_for_its_retry_after(cube, make_client):
    cube.answers[LIST] = [drf({"detail": "Slow down."}, 429, **{"Retry-After": "0.05"}), drf(PAGE)]
    client = make_client(max_retry_wait=5)
    started = time.monotonic()
    assert client.fetch_page(page_request(cube)).body == PAGE
    assert time.monotonic() - started >= 0.05
    assert client.retries_of("assignment 7") == 1


def test_retries_exhausted(cube, make_client):
    cube.answers[LIST] = [html(503, "Service Unavailable")]
    client = make_client()
    message = failure(client, page_request(cube), RetriesExhaustedError)
    assert message.startswith("assignment 7: giving up on /assignments/7/customers/ after 3 tries")
    assert "503 Service Unavailable" in message
    assert cube.paths() == [LIST] * 3
    assert client.retries_of("assignment 7") == 2


def test_a_cancelled_gate_sends_nothing(cube, make_client):
    cube.answers[LIST] = [drf(PAGE)]
    gate = RequestGate()
    client = make_client(gate)
    gate.cancel()
    with pytest.raises(Cancelled):
        client.fetch_page(page_request(cube))
    assert cube.received == []


def test_a_redirect_to_another_host_is_refused(cube, elsewhere, make_client):
    target = f"http://localhost:{elsewhere.port}{LIST}"
    cube.answers[LIST] = [(302, {"Location": target}, b"")]
    elsewhere.answers[LIST] = [drf(PAGE)]
    message = failure(make_client(), page_request(cube), ApiError)
    assert message.startswith(
        f"the server redirected /api/v1/assignments/7/customers/ to http://localhost:{elsewhere.port}"
    )
    assert "only sends credentials to the configured host" in message
    # The credentials never left for the other host.
    assert elsewhere.received == []
    assert cube.paths() == [LIST]


def test_a_redirect_to_another_scheme_is_refused(cube, make_client):
    cube.answers[LIST] = [(301, {"Location": f"https://127.0.0.1:{cube.port}{LIST}"}, b"")]
    message = failure(make_client(), page_request(cube), ApiError)
    assert f"to https://127.0.0.1:{cube.port}" in message


def test_a_redirect_within_the_host_is_followed(cube, make_client):
    moved = "/api/v1/assignments/7/customers/moved/"
    cube.answers[LIST] = [(301, {"Location": moved}, b"")]
    cube.answers[moved] = [drf(PAGE)]
    page = make_client().fetch_page(page_request(cube))
    assert page.body == PAGE
    assert cube.paths() == [LIST, moved]
    assert all(headers["Authorization"] == f"Token {TOKEN}" for _, headers in cube.received)


def test_endless_redirects_stop(cube, make_client):
    cube.answers[LIST] = [(302, {"Location": LIST}, b"")]
    message = failure(make_client(), page_request(cube), ApiError)
    assert message.startswith("too many redirects for /api/v1/assignments/7/customers/")
