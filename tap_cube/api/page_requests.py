"""A stream's page requests, made as the SDK's `RESTStream` makes them, without going back
to the stream for each page.

The stream says once per partition where its list is (`ListAddress`). Each page's
request is then that URL with the first page's parameters, or exactly those of the
`next` link being followed (tap_cube/api/paging.py), with the stream's headers and
User-Agent, authenticated and prepared by the session as
`RESTStream.build_prepared_request` prepares the request of `get_http_request`.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from singer_sdk.streams.rest import HTTPRequest

from tap_cube.api import paging
from tap_cube.api.client import CubeClient, PageRequest
from tap_cube.api.paging import CubeNextLinkPaginator

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from singer_sdk.helpers.types import Context

    from tap_cube.api.page import Page


@dataclass(frozen=True)
class ListAddress:
    """Where one partition's list is."""

    #: How messages name the partition ("assignment 7").
    where: str
    #: The list's URL (the SDK's `get_url`).
    url: str
    #: The first page's query parameters.
    first_params: dict[str, t.Any]


class PageRequests:
    """The requests, paginators and pages of one stream's partitions."""

    def __init__(
        self,
        client: CubeClient,
        address: Callable[[Context | None], ListAddress],
        *,
        headers: Mapping[str, str],
        user_agent: str,
    ) -> None:
        """`address`: where a partition's list is, asked once per partition."""
        self._client = client
        self._address = address
        self._headers = dict(headers)
        self._user_agent = user_agent
        self._addresses: dict[tuple[tuple[str, t.Any], ...], ListAddress] = {}

    def address(self, context: Context | None) -> ListAddress:
        """Where the partition's list is (asked of the stream the first time only)."""
        key = tuple((context or {}).items())
        found = self._addresses.get(key)
        if found is None:
            found = self._addresses[key] = self._address(context)
        return found

    def paginator(self, context: Context | None) -> CubeNextLinkPaginator:
        """The paginator of one partition's list."""
        address = self.address(context)
        list_path = address.url.removeprefix(self._client.url_base)
        query = paging.first_page_query(address.first_params)
        return CubeNextLinkPaginator(address.where, list_path, query)

    def request(self, context: Context | None, query: str | None) -> PageRequest:
        """The authenticated request for a page: the first, or the one `query` names."""
        address = self.address(context)
        params = paging.request_params(address.first_params, query)
        request = requests.Request(
            method="GET",
            url=address.url,
            params=HTTPRequest(url=address.url, params=params).encode_params(),
            headers=dict(self._headers),
        )
        request.headers.setdefault("User-Agent", self._user_agent)
        session = self._client.session
        session.auth = self._client.authenticator
        return PageRequest(
            session.prepare_request(request),
            address.where,
            self.shown_path(context, query),
            query,
        )

    def fetch(self, context: Context | None, query: str | None) -> Page:
        """One page of a partition's list: the first, or the one `query` names."""
        return self._client.fetch_page(self.request(context, query))

    def shown_path(self, context: Context | None, query: str | None) -> str:
        """The path and query of a page, as messages show it."""
        address = self.address(context)
        return paging.shown_path(urlsplit(address.url).path, address.first_params, query)
