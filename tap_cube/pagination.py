"""Following DRF `next` links safely: only their query is used, never their scheme or host."""

from __future__ import annotations

import typing as t
import weakref
from urllib.parse import parse_qsl, urlencode, urlsplit

from singer_sdk.pagination import BaseHATEOASPaginator
from typing_extensions import override

from tap_cube.errors import ApiError

if t.TYPE_CHECKING:
    from urllib.parse import ParseResult

    import requests

#: The parsed body of each page response, so that pagination reads what was already
#: decoded instead of decoding the JSON a second time.
_page_bodies: weakref.WeakKeyDictionary[requests.Response, dict[str, t.Any]] = (
    weakref.WeakKeyDictionary()
)

QueryPairs = tuple[tuple[str, str], ...]


def remember_body(response: requests.Response, body: dict[str, t.Any]) -> None:
    _page_bodies[response] = body


def page_body(response: requests.Response) -> dict[str, t.Any]:
    body = _page_bodies.get(response)
    if body is None:
        body = t.cast("dict[str, t.Any]", response.json())
        remember_body(response, body)
    return body


def next_query(next_link: object) -> str | None:
    """The query of a `next` link, the only part of it the tap trusts.

    DRF builds absolute links from what its proxy passes on, so they may name `http://`
    or an internal host. Requests always go to the configured base URL and the stream's
    own path; the link only says which page comes next.
    """
    if not next_link or not isinstance(next_link, str):
        return None
    return urlsplit(next_link).query


def query_pairs(query: str) -> QueryPairs:
    return tuple(sorted(parse_qsl(query, keep_blank_values=True)))


def query_for_page(base_params: QueryPairs, page: int) -> str:
    """The query DRF puts in the link to page `page` of a list fetched with `base_params`."""
    return urlencode(sorted([*base_params, ("page", str(page))]))


class CubeNextLinkPaginator(BaseHATEOASPaginator):
    """Follows `next` links until they are null, refusing to revisit a page or leave the list."""

    def __init__(self, description: str, first_params: QueryPairs) -> None:
        super().__init__()
        self._description = description
        #: The query of the list's first page, from which DRF derives the others.
        self.first_params = first_params
        self._seen: set[QueryPairs] = {first_params}

    @override
    def get_next_url(self, response: requests.Response) -> str | None:
        link = page_body(response).get("next")
        return link if isinstance(link, str) and link else None

    @override
    def advance(self, response: requests.Response) -> None:
        next_value = self.get_next(response)
        if next_value is None:
            super().advance(response)
            return
        pairs = query_pairs(next_value.query)
        changed = sorted({name for name, _ in set(self.first_params) - set(pairs)})
        if changed:
            # A link to another list (another window, say): following it would mix that
            # list's rows into this one and leave the rest of this one unread.
            msg = (
                f"{self._description}: the server's next link (?{next_value.query}) drops or "
                f"changes {', '.join(changed)} of this list; stopping instead of reading "
                "another list. Retry later or report it to Headshed."
            )
            raise ApiError(msg)
        if pairs in self._seen:
            msg = (
                f"{self._description}: the server's next link (?{next_value.query}) repeats "
                "a page already read; stopping instead of looping. Retry later or report "
                "it to Headshed."
            )
            raise ApiError(msg)
        self._seen.add(pairs)
        super().advance(response)

    def token_query(self) -> str | None:
        value: ParseResult | None = self.current_value
        return None if value is None else value.query
