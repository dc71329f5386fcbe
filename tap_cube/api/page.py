"""A page of a Cube list, decoded once where it arrives, as every part of the read sees it."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

if t.TYPE_CHECKING:
    from datetime import datetime


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a Cube list, as decoded from its response: all that paging and
    reading need of it, so the JSON is decoded once."""

    #: The decoded body: a DRF page, or a plain list wrapped as one
    #: (tap_cube/api/responses.py `decode_body`).
    body: dict[str, t.Any]
    #: When the page arrived: its records were extracted together, then.
    arrived_at: datetime
    #: Why this page's `next` link was not followed (the next page was asked for by
    #: number instead); None when it was, or when there is none. Known once it is emitted.
    unusable_link: str | None = None

    @property
    def records(self) -> list[dict[str, t.Any]]:
        return t.cast("list[dict[str, t.Any]]", self.body["results"])

    @property
    def count(self) -> int | None:
        """The rows the list has, by the page's `count` (None when it has none)."""
        count = self.body.get("count")
        return count if type(count) is int else None  # not a bool

    @property
    def next(self) -> object:
        """The page's `next` as the server wrote it (usually a URL; None when none)."""
        return self.body.get("next")

    @property
    def next_url(self) -> str | None:
        """The `next` link, when it is one (a non-empty string)."""
        link = self.body.get("next")
        return link if isinstance(link, str) and link else None
