"""Complete or loud: a list that changes while it is read is read again, never cut short."""

from __future__ import annotations

import json
import threading
import time
import typing as t
from urllib.parse import parse_qsl, urlsplit

import pytest

from tap_cube.api import paging
from tap_cube.errors import ApiError, IncompleteError
from tests.conftest import (
    Answer,
    LocalServer,
    config_for,
    plain_assignment,
    read_in_process,
    run_tap,
)
from tests.test_concurrency import customers_stream, fetch_threads


def ids_of(records):
    return [r["crm__customer_id"] for r in records]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_rows_removed_mid_paging_lose_no_survivor(simulator, concurrency):
    sim = simulator([plain_assignment(7, 2000)], latency=0.02)
    stream = customers_stream(sim, [7], max_concurrent_requests=concurrency)
    emitted = []
    for index, record in enumerate(stream.get_records({"assignment_id": 7})):
        emitted.append(record["crm__customer_id"])
        if index == 0:
            # 30 customers disappear before the first one: DRF's page 2 now starts 30
            # rows later, so 30 survivors would never be served on this pass.
            sim.set_count(7, 1970, at="start")
    survivors = set(ids_of(sim.customers(7)))
    assert len(emitted) == len(set(emitted))
    assert survivors <= set(emitted)
    assert fetch_threads() == []


def test_a_list_that_never_settles_fails_loudly(simulator):
    sim = simulator([plain_assignment(7, 3000)], latency=0.01)
    stream = customers_stream(sim, [7], max_concurrent_requests=1)
    stop = threading.Event()

    def keep_removing() -> None:
        count = 3000
        while not stop.wait(0.005) and count > 1000:
            count -= 1
            sim.set_count(7, count, at="start")

    remover = threading.Thread(target=keep_removing)
    remover.start()
    try:
        with pytest.raises(IncompleteError, match=r"assignment 7: the list kept changing") as e:
            for _ in stream.get_records({"assignment_id": 7}):
                pass
    finally:
        stop.set()
        remover.join()
    assert "read 4 times" in str(e.value)
    assert fetch_threads() == []


def test_empty_page_with_a_next_link_is_read_again(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1500)], next_style="same")
    empty = {"count": 1500, "next": f"{sim.url}/assignments/7/customers/?page=3", "results": []}
    sim.fail_next("/customers/?page=2", 200, json.dumps(empty))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert sorted(ids_of(run.records())) == sorted(ids_of(sim.customers(7)))
    assert "reading it again from page 1" in run.stderr


@pytest.mark.parametrize("detail", ["Invalid page.", "Ugyldig side."])
def test_invalid_page_mid_list_is_read_again(simulator, tmp_path, detail):
    """The API's 404 for a later page: whatever language its detail is in."""
    sim = simulator([plain_assignment(7, 1500)])
    sim.fail_next("/customers/?page=3", 404, json.dumps({"detail": detail}))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    records = ids_of(run.records())
    assert len(records) == len(set(records)) == 1500


def test_short_list_fails_when_it_stays_short(simulator, tmp_path):
    # The server keeps counting 1000 but serves 990: never complete, never silent.
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    customers = sim.customers(7)
    short = {"count": 1000, "next": None, "previous": None, "results": customers[500:990]}
    sim.fail_next("/customers/?page=2", 200, json.dumps(short), times=10)
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 1
    assert run.last_stderr_line.startswith("tap-cube: error: assignment 7:")
    assert "990 of the 1000" in run.last_stderr_line


def test_runaway_next_links_are_bounded(simulator, tmp_path):
    # Every page links to a new query while serving the same rows again.
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    customers = sim.customers(7)
    for n in range(2, 40):
        page = {
            "count": 1000,
            "next": f"{sim.url}/assignments/7/customers/?page=2&n={n + 1}",
            "results": customers[:500],
        }
        sim.fail_next(f"n={n}", 200, json.dumps(page))
    first = {
        "count": 1000,
        "next": f"{sim.url}/assignments/7/customers/?page=2&n=2",
        "results": customers[:500],
    }
    sim.fail_next("/customers/", 200, json.dumps(first), times=2)  # discovery and sync
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path, timeout=60)
    assert run.returncode == 1
    # Page 2 brings no new row: the read stops there, not at the count's bound.
    assert "assignment 7: page 2 served only rows already served" in run.last_stderr_line
    assert len([r for r in sim.requests if "n=" in r.query]) <= 2


# --- servers whose links never end ----------------------------------------------------------


class EndlessCube:
    """A Cube of the tests' own whose assignment 7 lists pages without a `count`, each
    linking to the next page number, for ever: the same 10 rows on every page, or 10
    new ones."""

    LIST = "/api/v1/assignments/7/customers/"

    def __init__(self, *, new_rows: bool) -> None:
        self.new_rows = new_rows
        self.pages_asked = 0
        self._server = LocalServer(self._answer)
        self.url = f"{self._server.origin}/api/v1"

    def _answer(self, path: str, headers: dict[str, str]) -> Answer:
        parts = urlsplit(path)
        if parts.path == self.LIST:
            self.pages_asked += 1
            number = int(dict(parse_qsl(parts.query)).get("page", "1"))
            first = (number - 1) * 10 if self.new_rows else 0
            rows = [{"crm__customer_id": str(i)} for i in range(first, first + 10)]
            body: object = {"next": f"{self.url}/assignments/7/customers/?page={number + 1}",
                            "previous": None, "results": rows}  # fmt: skip
        elif "custom_fields" in parts.path or "/campaigns" in parts.path:
            body = []
        else:
            body = {"count": 0, "next": None, "results": []}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def endless_cube() -> t.Iterator[t.Callable[..., EndlessCube]]:
    started: list[EndlessCube] = []

    def start(**kwargs: t.Any) -> EndlessCube:
        started.append(EndlessCube(**kwargs))
        return started[-1]

    yield start
    for cube in started:
        cube.stop()


def endless_config(cube: EndlessCube) -> dict[str, t.Any]:
    return {"api_url": cube.url, "auth_token": "tok-3f9a7c21d4e8b6a0", "assignment_ids": [7]}


def test_pages_repeating_the_same_rows_without_count_stop_at_once(endless_cube, tmp_path):
    cube = endless_cube(new_rows=False)
    started = time.monotonic()
    run = run_tap(endless_config(cube), tmp_path, timeout=60)
    assert time.monotonic() - started < 30
    assert run.returncode == 1
    line = run.last_stderr_line
    assert line.startswith("tap-cube: error: assignment 7: page 2 served only rows already served")
    assert cube.pages_asked <= 4  # discovery's sample, then pages 1 and 2 (and one ahead)


def test_endless_new_rows_without_count_stop_at_the_bound(endless_cube, monkeypatch):
    monkeypatch.setattr(paging, "MAX_PAGES_WITHOUT_COUNT", 40)
    cube = endless_cube(new_rows=True)
    with pytest.raises(ApiError) as raised:
        read_in_process(endless_config(cube), None)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("assignment 7: the server sent 40 pages without a count")
    assert cube.pages_asked <= 40 + 3
