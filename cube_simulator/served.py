"""Bodies served verbatim: a documented example answers its endpoint exactly as written.

The notes' examples show one page of a longer list (`"count": 781` over one row; the rest
is elided as `........`). Served here, page 1 is the body itself, byte for byte, and the
elided rows exist too, on the pages DRF would number 2, 3, ...: copies of the shown rows
with ids of their own, so that a client that reads on finds the list `count` announces.
Call outcomes and product registrations answer the body for every window of days that
holds the documented one, and an empty list for other windows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

from cube_simulator.answers import Answer, error
from cube_simulator.fake_values import encode

if TYPE_CHECKING:
    from collections.abc import Callable

    from cube_simulator.answers import Request

#: Rows per page after the first, as DRF's default page size.
ELIDED_PAGE_SIZE = 500
#: The fields that tell rows apart; elided rows get values of their own in these.
_IDENTITIES = ("crm__customer_id", "id", "customer_id", "campaign__id")
_INVALID_PAGE = error(404, "Invalid page.")


@dataclass
class _Served:
    body: bytes
    window: tuple[date, date] | None


def _day(text: str | None) -> date | None:
    if text is None or len(text) != 8 or not text.isdigit():
        return None
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _elided_row(row: dict[str, object], number: int) -> dict[str, object]:
    """Row `number` (1, 2, ...) of those the example elides: a copy of a shown one."""
    copy = dict(row)
    for field in _IDENTITIES:
        value = copy.get(field)
        # The row's own id with the number appended: distinct from every other's.
        if type(value) is int:
            copy[field] = value * 1_000_000 + number
        elif isinstance(value, str) and value.isdigit():
            copy[field] = f"{value}{number:06d}"
        elif isinstance(value, str) and value:
            copy[field] = f"{value}-{number}"
        # "" (an anonymized customer) stays "": such rows share it.
    return copy


class ServedBodies:
    """The bodies tests have the simulator serve, by path (with /api/v1/)."""

    def __init__(self, origin: Callable[[], str]) -> None:
        self._origin = origin
        self._by_path: dict[str, _Served] = {}

    def serve(self, path: str, body: bytes, window: tuple[date, date] | None) -> None:
        self._by_path[path.rstrip("/")] = _Served(body, window)

    def answer(self, req: Request) -> Answer | None:
        """The served answer to `req`, or None when no body is served for its path."""
        served = self._by_path.get(req.path.rstrip("/"))
        if served is None:
            return None
        page = req.param("page") or "1"
        if served.window is not None:
            lo, hi = _day(req.param("from_date")), _day(req.param("to_date"))
            if lo is None or hi is None or not lo <= served.window[0] <= served.window[1] <= hi:
                if page != "1":
                    return _INVALID_PAGE
                return Answer(200, encode(_page(0, None, [])), paginated=True)
        if page == "1":
            return Answer(200, served.body, paginated=served.body.lstrip()[:1] == b"{")
        return self._elided_page(served, req, page)

    def _elided_page(self, served: _Served, req: Request, page: str) -> Answer:
        body = json.loads(served.body)
        shown = body.get("results") if isinstance(body, dict) else None
        if not page.isdigit() or not isinstance(shown, list) or not shown:
            return _INVALID_PAGE
        count = body.get("count")
        elided = (count if isinstance(count, int) else 0) - len(shown)
        number = int(page)
        start = (number - 2) * ELIDED_PAGE_SIZE
        if number < 2 or start >= elided:
            return _INVALID_PAGE
        stop = min(start + ELIDED_PAGE_SIZE, elided)
        rows = [_elided_row(shown[i % len(shown)], i + 1) for i in range(start, stop)]
        query = [(k, v) for k, v in parse_qsl(req.query) if k != "page"]
        link = None
        if stop < elided:
            link = f"{self._origin()}{req.path}?{urlencode([*query, ('page', number + 1)])}"
        return Answer(200, encode(_page(count, link, rows)), paginated=True)


def _page(count: object, link: str | None, rows: list[dict[str, object]]) -> dict[str, object]:
    return {"count": count, "next": link, "previous": None, "results": rows}
