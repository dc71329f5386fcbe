"""CubeNextLinkPaginator on its own: which `next` links it follows, and how it reads on.

Pages are built directly (tap_cube/api/fetch.py `Page`); nothing is requested.
"""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime
from urllib.parse import urlparse

import pytest

from tap_cube.api.page import Page
from tap_cube.api.paging import (
    LEAVES_BY_PATH,
    LEAVES_BY_QUERY,
    REPEATS_PAGE,
    REPEATS_REQUEST,
    CubeNextLinkPaginator,
    query_for_page,
    query_pairs,
)
from tap_cube.errors import ApiError

LIST = "/assignments/7/customers/"
API = "https://cube.example/api/v1"
WINDOW = query_pairs("from_date=2024-01-01&to_date=2024-01-07")


def page(results: list[dict[str, t.Any]], *, count: int | None = None, next: object = None) -> Page:
    body: dict[str, t.Any] = {"next": next, "previous": None, "results": results}
    if count is not None:
        body["count"] = count
    return Page(body, arrived_at=datetime.now(UTC))


def rows(n: int) -> list[dict[str, t.Any]]:
    return [{"id": i} for i in range(n)]


def paginator(first_params: tuple[tuple[str, str], ...] = ()) -> CubeNextLinkPaginator:
    return CubeNextLinkPaginator("assignment 7", LIST, first_params)


def test_query_pairs_are_sorted_and_keep_blank_values():
    assert query_pairs("b=2&a=&a=1") == (("a", ""), ("a", "1"), ("b", "2"))
    assert query_pairs("") == ()


def test_query_for_page_adds_the_page_number_to_the_lists_own_params():
    assert query_for_page((), 2) == "page=2"
    assert query_for_page(WINDOW, 3) == "from_date=2024-01-01&page=3&to_date=2024-01-07"


def test_a_fresh_paginator_has_nothing_to_read_yet():
    p = paginator(WINDOW)
    assert p.first_params == WINDOW
    assert p.next_query is None
    assert not p.finished
    assert p.unusable_link is None


@pytest.mark.parametrize(
    "link",
    [
        # DRF builds absolute links from what its proxy passes on: only the query counts.
        "http://cube.example/api/v1/assignments/7/customers/?page=2",
        "http://10.0.0.5:8000/api/v1/assignments/7/customers/?page=2",
        f"{API}{LIST}?page=2",
        # A proxy may put the API under another prefix.
        "https://proxy.example/cube/api/v1/assignments/7/customers/?page=2",
        # Relative links.
        "/api/v1/assignments/7/customers/?page=2",
        "?page=2",
    ],
)
def test_a_usable_link_gives_only_its_query(link):
    p = paginator()
    assert p.link_kind(urlparse(link)) is None
    assert p.link_problem(urlparse(link)) is None
    p.advance(page(rows(2), count=5, next=link))
    assert p.next_query == "page=2"
    assert not p.finished
    assert p.unusable_link is None


def test_a_usable_link_keeps_the_lists_params_as_the_server_wrote_them():
    link = f"{API}/call_outcomes/?to_date=2024-01-07&page=2&from_date=2024-01-01"
    p = CubeNextLinkPaginator("outcomes", "/call_outcomes/", WINDOW)
    p.advance(page(rows(3), count=9, next=link))
    assert p.next_query == "to_date=2024-01-07&page=2&from_date=2024-01-01"
    assert p.unusable_link is None


def test_no_link_finishes_the_list():
    p = paginator()
    p.advance(page(rows(2), count=5, next=None))
    assert p.finished
    assert p.next_query is None
    assert p.unusable_link is None


@pytest.mark.parametrize(
    ("link", "why"),
    [
        ("", 'is not a link ("")'),
        (5, "is not a link (5)"),
        ([], "is not a link ([])"),
        (f"{API}{LIST}?page=0", "names no page DRF numbers (?page=0)"),
        ("?page=-1", "names no page DRF numbers (?page=-1)"),
        ("?page=last", "names no page DRF numbers (?page=last)"),
        ("?page=%C2%B2", "names no page DRF numbers (?page=%C2%B2)"),
        ("?page=1", f"{REPEATS_PAGE} (?page=1)"),
    ],
)
def test_a_next_that_names_no_page_to_read_reads_on_by_page_number(link, why):
    p = paginator()
    p.advance(page(rows(2), count=5, next=link))
    assert p.next_query == "page=2"
    assert p.unusable_link == why
    p.advance(page(rows(2), count=5, next=link))
    assert p.next_query == "page=3"
    p.advance(page(rows(1), count=5, next=link))
    assert p.finished


@pytest.mark.parametrize("link", ["", 5])
def test_a_next_that_is_no_link_ends_a_list_its_count_says_is_read(link):
    # As null would: nothing is left to read, so there is nothing to warn about.
    p = paginator()
    p.advance(page(rows(2), count=2, next=link))
    assert p.finished
    assert p.unusable_link is None


@pytest.mark.parametrize("link", ["", 5])
def test_a_next_that_is_no_link_ends_a_list_without_count(link):
    p = paginator()
    p.advance(page(rows(2), next=link))
    assert p.finished
    assert p.unusable_link is None


def test_links_are_followed_page_after_page_until_none():
    p = paginator()
    queries = []
    for n, link in enumerate(["?page=2", "?page=3", None], start=1):
        p.advance(page(rows(2), count=6, next=link))
        queries.append(p.next_query)
        assert p.finished == (n == 3)
    assert queries == ["page=2", "page=3", None]


def test_a_link_repeating_the_request_reads_on_by_page_number():
    # The notes' data-owner customers example: `next` is the URL just requested.
    p = paginator()
    link = f"http://internal:8000/api/v1{LIST}"
    assert p.link_kind(urlparse(link)) == REPEATS_REQUEST
    p.advance(page(rows(2), count=5, next=link))
    assert p.next_query == "page=2"
    assert not p.finished
    assert p.unusable_link is not None
    assert p.unusable_link.startswith(REPEATS_REQUEST)
    # Page 2 repeats itself too: read on to page 3, then the count says the list is read.
    p.advance(page(rows(2), count=5, next=f"{API}{LIST}?page=2"))
    assert p.next_query == "page=3"
    assert p.unusable_link == f"{REPEATS_REQUEST} (?page=2)"
    p.advance(page(rows(1), count=5, next=f"{API}{LIST}?page=3"))
    assert p.finished
    assert p.next_query is None
    assert p.unusable_link == f"{REPEATS_REQUEST} (?page=3)"


def test_a_link_to_a_page_already_read_reads_on_by_page_number():
    p = paginator()
    p.advance(page(rows(2), count=8, next="?page=2"))
    p.advance(page(rows(2), count=8, next="?page=3"))
    back = "?page=2"
    assert p.link_kind(urlparse(back)) == REPEATS_PAGE
    p.advance(page(rows(2), count=8, next=back))
    assert p.next_query == "page=4"
    assert p.unusable_link == f"{REPEATS_PAGE} (?page=2)"
    assert not p.finished


def test_a_link_to_another_path_reads_on_by_page_number_on_the_lists_own():
    # The notes' product registrations link to another window of /call_outcomes/.
    p = paginator(WINDOW)
    link = "http://cube.example/api/v1/call_outcomes/?from_date=2024-01-08&page=2"
    assert p.link_kind(urlparse(link)) == LEAVES_BY_PATH
    p.advance(page(rows(3), count=7, next=link))
    assert p.next_query == query_for_page(WINDOW, 2)
    assert p.unusable_link == "names another list (/api/v1/call_outcomes/)"
    # No link at all on a later page still ends the list.
    p.advance(page(rows(3), count=7, next=None))
    assert p.finished


def test_a_link_dropping_the_lists_params_reads_on_by_page_number():
    p = paginator(WINDOW)
    link = f"{API}{LIST}?from_date=2024-01-08&page=2"
    assert p.link_kind(urlparse(link)) == LEAVES_BY_QUERY
    p.advance(page(rows(3), count=7, next=link))
    assert p.next_query == query_for_page(WINDOW, 2)
    assert p.unusable_link is not None
    assert p.unusable_link.startswith("drops or changes from_date, to_date of this list")
    assert "(?from_date=2024-01-08&page=2)" in p.unusable_link


def test_reading_on_by_number_after_a_link_without_a_page_number():
    # A usable link without `page` still counts as the next page.
    p = paginator()
    p.advance(page(rows(2), count=6, next="?cursor=abc"))
    assert p.next_query == "cursor=abc"
    p.advance(page(rows(2), count=6, next="?cursor=abc"))
    assert p.unusable_link is not None
    assert p.unusable_link.startswith(REPEATS_REQUEST)
    assert p.next_query == "page=3"


@pytest.mark.parametrize("served", [5, 6])
def test_reading_on_by_number_stops_at_the_count(served):
    p = paginator()
    p.advance(page(rows(3), count=served, next="?page=2"))
    p.advance(page(rows(3), count=served, next="?page=2"))  # repeats itself
    assert p.finished
    assert p.next_query is None
    assert p.unusable_link is not None


def test_reading_on_by_number_stops_at_an_empty_page():
    p = paginator()
    p.advance(page([], count=10, next=f"{API}{LIST}"))
    assert p.finished
    assert p.next_query is None


def test_an_unusable_link_without_a_count_is_an_error():
    p = paginator()
    with pytest.raises(ApiError) as raised:
        p.advance(page(rows(2), next=f"{API}{LIST}"))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("assignment 7: the server's next link repeats the request")
    assert "no count" in message


def test_a_page_number_read_already_is_an_error():
    p = paginator()
    # Page 1 links to page 3, page 3 back to page 2 (both usable: not read yet);
    # page 2 then repeats itself, and by number the next would be page 3 again.
    p.advance(page(rows(2), count=10, next="?page=3"))
    p.advance(page(rows(2), count=10, next="?page=2"))
    assert p.next_query == "page=2"
    with pytest.raises(ApiError) as raised:
        p.advance(page(rows(2), count=10, next="?page=2"))
    message = str(raised.value)
    assert "\n" not in message
    assert "page 3 was read already" in message
    assert message.startswith("assignment 7: ")


def test_query_after_first_is_what_a_fresh_read_asks_for():
    p = paginator()
    first = page(rows(2), count=6, next="?page=2")
    p.advance(first)
    p.advance(page(rows(2), count=6, next="?page=3"))
    # To this paginator page 2 was read; to a fresh read it is the next one.
    assert p.link_kind(urlparse("?page=2")) == REPEATS_PAGE
    assert p.query_after_first(first) == "page=2"
    # Asking does not move this paginator on.
    assert p.next_query == "page=3"
    assert not p.finished


def test_query_after_first_reads_on_by_number_when_the_first_link_is_unusable():
    p = paginator(WINDOW)
    first = page(rows(3), count=7, next=f"{API}/call_outcomes/?page=2")
    assert p.query_after_first(first) == query_for_page(WINDOW, 2)
    assert p.query_after_first(page(rows(3), count=3, next=f"{API}{LIST}")) is None
    assert p.query_after_first(page(rows(3), count=3)) is None
