"""Following DRF `next` links safely: only their query is used, never their scheme or host."""

from __future__ import annotations

import typing as t
from urllib.parse import parse_qsl, urlencode, urlparse

import msgspec

from tap_cube.errors import ApiError

if t.TYPE_CHECKING:
    from urllib.parse import ParseResult

    from tap_cube.api.page import Page

QueryPairs = tuple[tuple[str, str], ...]


def query_pairs(query: str) -> QueryPairs:
    return tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def query_for_page(base_params: QueryPairs, page: int) -> str:
    """The query DRF puts in the link to page `page` of a list fetched with `base_params`."""
    return urlencode(sorted([*base_params, ("page", str(page))]))


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

    Only a link's query is ever requested: DRF builds absolute links from what its proxy
    passes on, so they may name `http://` or an internal host. Requests always go to the
    configured base URL and the stream's own path; the link only says which page is next.

    It advances on decoded pages (tap_cube/api/fetch.py `Page`), not on responses as the
    paginators of `singer_sdk.pagination` do: pages are fetched ahead by worker threads
    and their JSON is decoded once, where they arrive.
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


def _numbers_a_page(value: str) -> bool:
    """Whether a `page` value is one DRF numbers its pages with: 1, 2, ..."""
    return value.isascii() and value.isdigit() and int(value) >= 1


def _segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment)


def _shown(query: str) -> str:
    return f" (?{query})" if query else ""
