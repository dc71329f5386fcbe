"""A stream's way to its pages: its client, its page requests and its page pipeline.

Made together as the stream is made, from plain values and the few functions of the
stream that say where a partition's list is; the stream then only hands them on.
"""

from __future__ import annotations

import typing as t

from tap_cube.api.client import CubeClient
from tap_cube.api.fetch import RequestGate, StreamPipeline
from tap_cube.api.page_requests import ListAddress, PageRequests
from tap_cube.settings import Settings

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterable, Mapping

    import requests
    from singer_sdk.helpers.types import Context

    from tap_cube.api.page import Page


class StreamRequests:
    """One stream's client, page requests and page pipeline."""

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
        where: Callable[[Context | None], str],
        url: Callable[[Context | None], str],
        first_params: Callable[[Context | None], dict[str, t.Any]],
        headers: Mapping[str, str],
        user_agent: str,
        plan: Callable[[], Iterable[Context]],
    ) -> None:
        """`where`, `url` and `first_params`: how messages name a partition, its list's
        URL and its first page's parameters (a `ListAddress`, asked once per partition);
        `plan`: the partitions whose pages may be fetched ahead, asked as the pipeline
        starts."""
        self.gate = gate
        self.client = CubeClient(
            config,
            session,
            gate,
            stream_name=stream_name,
            logger=logger,
            paginated=paginated,
            optional=optional,
            partition_setting=partition_setting,
        )
        #: The page requests, made without coming back to the stream for each page.
        self.pages = PageRequests(
            self.client,
            lambda context: ListAddress(where(context), url(context), first_params(context)),
            headers=headers,
            user_agent=user_agent,
        )
        #: The page pipeline, started as the stream starts to read (api/fetch.py).
        self.pipeline = StreamPipeline(
            self.pages.fetch,
            concurrency=Settings(config).max_concurrent_requests,
            paginator=self.pages.paginator,
            gate=gate,
            plan=plan,
        )

    def fetch_page(self, context: Context | None, query: str | None) -> Page:
        """One page of a partition's list: the first, or the one `query` names."""
        return self.pages.fetch(context, query)

    def close(self) -> None:
        """End outstanding work; no worker thread outlives this call."""
        self.pipeline.close()
