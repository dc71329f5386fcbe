"""Paging a Cube list, in one place: which page comes next, which pages can be fetched
ahead, and when a read of the list must stop.

The interface, for the stream, the page pipeline (tap_cube/api/fetch.py) and the complete
read (tap_cube/records/completeness.py):

- `first_page_query` and `request_params`: the query of a list's first page, and the
  parameters of any page's request (the first page's, or exactly those of the link);
- `CubeNextLinkPaginator`: follows DRF `next` links, reads on by page number where a
  link is unusable, and `predicted_queries` names the pages to fetch ahead;
- `PageTally`: one read's pages against the limits that make every read end.

It stands in for these hooks of the Singer SDK's `RESTStream`, on purpose:

- `get_new_paginator` and the paginators of `singer_sdk.pagination`: they advance on a
  `requests.Response`, in the thread that asks for the next page. Pages here are fetched
  ahead by worker threads and decoded once, where they arrive, so the paginator advances
  on decoded pages (tap_cube/api/page.py), and predicts page numbers for the prefetch.
- `parse_response`: records are a decoded page's `results`, not parsed from a response.
- `get_url_params` and `get_http_request`: a page's request (tap_cube/api/page_requests.py)
  has `request_params`; a link's scheme and host are never requested, only its query
  (below).
- `get_next_page_token` and `has_more`: `CubeNextLinkPaginator.advance`.

Only a link's query is ever requested: DRF builds absolute links from what its proxy
passes on, so they may name `http://` or an internal host. Requests always go to the
configured base URL and the stream's own path; the link only says which page is next.
"""

from __future__ import annotations

import math
import typing as t
from urllib.parse import parse_qs, parse_qsl, urlencode, urlparse

import msgspec

from tap_cube.errors import ApiError

if t.TYPE_CHECKING:
    from collections.abc import Mapping
    from urllib.parse import ParseResult

    from tap_cube.api.page import Page

#: Pages one read of a list without a `count` may take: nothing the server said bounds
#: it, so this does (5,000,000 rows at Cube's 500 a page).
MAX_PAGES_WITHOUT_COUNT = 10_000

QueryPairs = tuple[tuple[str, str], ...]


def query_pairs(query: str) -> QueryPairs:
    return tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def query_for_page(base_params: QueryPairs, page: int) -> str:
    """The query DRF puts in the link to page `page` of a list fetched with `base_params`."""
    return urlencode(sorted([*base_params, ("page", str(page))]))


def first_page_query(params: Mapping[str, t.Any]) -> QueryPairs:
    """The query pairs of a list's first page, from the stream's first-page parameters."""
    return query_pairs(urlencode(params, doseq=True))


def request_params(first_params: dict[str, t.Any], query: str | None) -> dict[str, t.Any]:
    """A page request's parameters: the first page's, or exactly those of `query`, the
    query of the `next` link (or page number) being followed."""
    if query:
        return dict(parse_qs(query, keep_blank_values=True))
    return first_params


def shown_path(path: str, first_params: dict[str, t.Any], query: str | None) -> str:
    """The path and query of a page, as messages show it."""
    params = query if query is not None else urlencode(first_params)
    return f"{path}?{params}" if params else path


#: The kinds of `next` link the tap does not follow.
LEAVES_BY_PATH = "leaves the list (another path)"
LEAVES_BY_QUERY = "leaves the list (without its own parameters)"
REPEATS_REQUEST = "repeats the request"
REPEATS_PAGE = "repeats a page already read"
NAMES_NO_PAGE = "names no page DRF numbers"


class CubeNextLinkPaginator:
    """Follows `next` links; where a link is unusable, reads on by DRF's page number.

    A link is unusable when it repeats a page already read (the notes' data-owner
    customers example links to the request itself) or leaves the list: another path,
    or a query without this list's own parameters (the notes' product registrations
    link to another window of `/call_outcomes/`); so is a `page` that DRF does not
    number (`page=0`, `page=-1`), and a `next` that is no link at all (`""`, a number).
    Then, while the page's `count` says
    rows remain, the next page is the list's own path and query with `page=N+1`; the
    complete read (tap_cube/records/completeness.py) checks what that serves like any list.
    """

    def __init__(self, description: str, list_path: str, first_params: QueryPairs) -> None:
        self._description = description
        #: The list's path below the API's base, e.g. /data_owners/3/B2C/customers/.
        self._list_path = list_path
        self._list_segments = _segments(list_path)
        #: The query of the list's first page, from which DRF derives the others.
        self.first_params = first_params
        # Page 1 is the first page, asked for without a number.
        self._seen: set[QueryPairs] = {first_params, query_pairs(query_for_page(first_params, 1))}
        #: The query of the page just read.
        self._current = first_params
        #: The number of the page just read, and the rows read up to it.
        self._page_number = 1
        self._rows = 0
        #: The query of the next page to read; None once the list is read.
        self.next_query: str | None = None
        self.finished = False
        #: Why the link of the page just read was not followed; None when it was (or null).
        self.unusable_link: str | None = None

    def advance(self, page: Page) -> None:
        """Take in the page just read: `next_query` is the next one, or `finished`."""
        self.next_query = self.query_after(page)
        if self.next_query is None:
            self.finished = True
            return
        pairs = query_pairs(self.next_query)
        self._seen.add(pairs)
        self._current = pairs
        numbered = dict(pairs).get("page", "")
        self._page_number = int(numbered) if _numbers_a_page(numbered) else self._page_number + 1

    def query_after(self, page: Page) -> str | None:
        """The next page's query: the server's link if it names one of this list, else by
        number; None when the list is read."""
        self._rows += len(page.records)
        link = page.next_url
        self.unusable_link = None if link is None else self.link_problem(urlparse(link))
        if link is None:
            self.unusable_link = self._no_link_problem(page)
            if self.unusable_link is None:
                return None
        elif self.unusable_link is None:
            return urlparse(link).query
        if page.count is None:
            msg = (
                f"{self._description}: the server's next link {self.unusable_link}, and its "
                "page has no count to read on by page number; stopping instead of looping "
                "or reading another list. Retry later or report it to Headshed."
            )
            raise ApiError(msg)
        if not page.records or self._rows >= page.count:
            return None  # by its count the list is read; the complete read checks that
        query = query_for_page(self.first_params, self._page_number + 1)
        if query_pairs(query) in self._seen:
            msg = (
                f"{self._description}: the server's next link {self.unusable_link}, and "
                f"page {self._page_number + 1} was read already; stopping instead of "
                "looping. Retry later or report it to Headshed."
            )
            raise ApiError(msg)
        return query

    def _no_link_problem(self, page: Page) -> str | None:
        """Why a page's `next` that is no link (`""`, a number) is unusable, or None when
        it ends the list as null does: there is none, or nothing says rows remain."""
        if page.next is None or page.count is None or not page.records:
            return None
        if self._rows >= page.count:
            return None
        shown = msgspec.json.encode(page.next).decode()
        return f"is not a link ({shown[:40]})"

    def link_problem(self, link: ParseResult) -> str | None:
        """Why `link` is no page of this list still to read, or None when it is one."""
        kind = self.link_kind(link)
        if kind == LEAVES_BY_PATH:
            return f"names another list ({link.path})"
        if kind == LEAVES_BY_QUERY:
            pairs = set(query_pairs(link.query))
            changed = sorted({name for name, _ in set(self.first_params) - pairs})
            return f"drops or changes {', '.join(changed)} of this list{_shown(link.query)}"
        return None if kind is None else f"{kind}{_shown(link.query)}"

    def link_kind(self, link: ParseResult) -> str | None:
        """Which kind of unusable link `link` is (LEAVES_BY_PATH, ...), or None: usable."""
        pairs = query_pairs(link.query)
        # Only the path's end is compared: a proxy may put the API under another prefix.
        segments = _segments(link.path)
        tail = segments[-len(self._list_segments) :] if self._list_segments else segments
        if segments and tail != self._list_segments:
            return LEAVES_BY_PATH
        if not set(self.first_params) <= set(pairs):
            return LEAVES_BY_QUERY
        if any(name == "page" and not _numbers_a_page(value) for name, value in pairs):
            return NAMES_NO_PAGE
        if pairs == self._current:
            return REPEATS_REQUEST
        if pairs in self._seen:
            return REPEATS_PAGE
        return None

    def query_after_first(self, first: Page) -> str | None:
        """The query a fresh read of the list asks for after its first page `first`."""
        fresh = CubeNextLinkPaginator(self._description, self._list_path, self.first_params)
        return fresh.query_after(first)

    def predicted_queries(self, first: Page) -> list[str]:
        """The queries of pages 2 to the last that the first page `first` implies, for
        fetching them ahead; none unless page 2 comes by its number.

        That is the case when the first page links to page 2 as DRF numbers it, or when
        its link is unusable and the list is read on by page number. DRF numbers its
        pages 1..ceil(count / page size); each page's own link is still checked.
        """
        if not first.records or first.count is None:
            return []
        second = self.query_after_first(first)
        params = self.first_params
        if second is None or query_pairs(second) != query_pairs(query_for_page(params, 2)):
            return []
        last = math.ceil(first.count / len(first.records))
        return [query_for_page(params, n) for n in range(2, last + 1)]


class PageTally:
    """One read of a list, page by page, against the limits that make every read end.

    A read may take twice the pages its first page's count and size allow, and two more
    (rows added while it is read), or MAX_PAGES_WITHOUT_COUNT without a count; a page
    beyond that stops the run, as a server that links on forever would page forever.
    """

    def __init__(self, where: str) -> None:
        self._where = where
        #: Pages taken so far.
        self.pages = 0
        #: The first page's count and number of rows.
        self.count: int | None = None
        self.page_size = 0
        #: The first count a later page gave that differs from the first page's.
        self.changed_to: int | None = None
        self._limit = 0

    def take(self, page: Page) -> None:
        """Count `page` in, or stop the run when it is beyond the read's limit."""
        self.pages += 1
        if self.pages == 1:
            self.count = page.count
            self.page_size = len(page.records)
            self._limit = page_limit(self.count, self.page_size)
        elif page.count != self.count and self.changed_to is None:
            self.changed_to = page.count
        if self.pages > self._limit:
            raise ApiError(self._beyond_limit())

    def _beyond_limit(self) -> str:
        """Why a read that reached this page stops (see `page_limit`)."""
        if self.count is None:
            return (
                f"{self._where}: the server sent {self.pages - 1} pages without a count, "
                "each with rows not served before, and links to more; a list without a "
                f"count is read up to {MAX_PAGES_WITHOUT_COUNT} pages, so the run stops "
                "rather than page without end. Report it to Headshed."
            )
        return (
            f"{self._where}: the server sent more pages than its count of {self.count} "
            f"allows ({self.pages} pages of up to {self.page_size} rows); stopping "
            "instead of paging forever. Report it to Headshed."
        )

    def repeated_page(self, rows: int, *, by_number: bool) -> ApiError:
        """The error for this page, whose `rows` rows were all served before while it links
        to more: a server that repeats its pages would be paged forever."""
        how = ", read by page number as the server's next links are unusable" if by_number else ""
        msg = (
            f"{self._where}: page {self.pages} served only rows already served ({rows} "
            f"rows{how}), and links to more; the server repeats its pages, so the run "
            "stops rather than page forever. Report it to Headshed."
        )
        return ApiError(msg)


def page_limit(count: int | None, page_size: int) -> int:
    """The pages one read may take: by the count and page size the server sent, with
    slack for rows added while reading (a loop exceeds it), else MAX_PAGES_WITHOUT_COUNT."""
    if count is None or not page_size:
        return MAX_PAGES_WITHOUT_COUNT
    return 2 * math.ceil(count / page_size) + 2


def _numbers_a_page(value: str) -> bool:
    """Whether a `page` value is one DRF numbers its pages with: 1, 2, ..."""
    return value.isascii() and value.isdigit() and int(value) >= 1


def _segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


def _shown(query: str) -> str:
    return f" (?{query})" if query else ""
