"""A stream's way to its pages: its client, its page requests and its page pipeline.

Made together as the stream is made, from its client and the function of the stream
that says where a partition's list is; the stream then only hands them on.
"""

from __future__ import annotations

import typing as t
from functools import partial

from tap_cube.api.fetch import PagePipeline, StreamPipeline
from tap_cube.api.page_requests import ListAddress, PageRequests

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from singer_sdk.helpers.types import Context

    from tap_cube.api.client import CubeClient
    from tap_cube.api.fetch import RequestGate
    from tap_cube.api.page import Page


class StreamRequests:
    """One stream's client, page requests and page pipeline."""

    def __init__(
        self,
        client: CubeClient,
        gate: RequestGate,
        address: Callable[[Context | None], ListAddress],
        *,
        concurrency: int,
        headers: Mapping[str, str],
        user_agent: str,
        plan: Callable[[], Iterable[Context]],
    ) -> None:
        """`address`: where a partition's list is, asked once per partition; `plan`: the
        partitions whose pages may be fetched ahead, asked as the pipeline starts;
        `concurrency`: the pipeline's most requests in flight."""
        self.gate = gate
        self.client = client
        #: The page requests, made without coming back to the stream for each page.
        self.pages = PageRequests(client, address, headers=headers, user_agent=user_agent)
        #: The page pipeline, started as the stream starts to read (api/fetch.py).
        self.pipeline = StreamPipeline(
            partial(
                PagePipeline,
                self.pages.fetch,
                concurrency=concurrency,
                paginator=self.pages.paginator,
                gate=gate,
            ),
            plan,
        )

    def fetch_page(self, context: Context | None, query: str | None) -> Page:
        """One page of a partition's list: the first, or the one `query` names."""
        return self.pages.fetch(context, query)

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        self.pipeline.close()
