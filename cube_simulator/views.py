"""The JSON views: what each kind of URL answers, once routed and authenticated."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from cube_simulator.answers import FORBIDDEN, NO_ROUTE, NOT_FOUND, Answer, error
from cube_simulator.fake_values import KIND, OTHER, TEXT, encode

if TYPE_CHECKING:
    from cube_simulator.answers import Request
    from cube_simulator.campaigns import Campaign, Campaigns
    from cube_simulator.container import Container
    from cube_simulator.outcomes import CallOutcomes
    from cube_simulator.page_cache import PageCache
    from cube_simulator.paging import Paginator
    from cube_simulator.store import Store


class Views:
    """Lists are paginated; their pages are rendered through the page cache."""

    def __init__(
        self,
        store: Store,
        campaigns: Campaigns,
        outcomes: CallOutcomes,
        paginator: Paginator,
        cache: PageCache,
    ) -> None:
        self._store = store
        self._campaigns = campaigns
        self._outcomes = outcomes
        self._paginator = paginator
        self._cache = cache

    def customers(self, c: Container, req: Request) -> Answer:
        return self._list(c, req, flow=False)

    def customer(self, c: Container, customer_id: str) -> Answer:
        snap = self._store.snapshot(c)
        try:
            idx = c.index_of(customer_id)
        except KeyError:
            return NOT_FOUND
        return Answer(200, encode(c.customer(idx, snap.overrides)))

    def callflow(self, c: Container, req: Request) -> Answer:
        return self._list(c, req, flow=True)

    def _list(self, c: Container, req: Request, *, flow: bool) -> Answer:
        """Customers or call-flow rows of a container, one page of them."""
        snap = self._store.snapshot(c)
        state = req.param("call_state") if flow else None
        if not state:  # django-filter ignores an empty filter value

            def results(start: int, stop: int) -> bytes:
                first = snap.first
                return self._cache.get(
                    (flow, c.key, snap.version, first + start, stop - start),
                    lambda: c.page(snap, range(first + start, first + stop), flow=flow),
                )

            return self._paginator.paginate(req, snap.size, results)

        # Not under the lock: scanning a million rows takes a while, and races are benign.
        indices = c.state_indices(snap, state)

        def filtered(start: int, stop: int) -> bytes:
            return self._cache.get(
                (flow, c.key, snap.version, state, start, stop),
                lambda: c.page(snap, indices[start:stop], flow=True),
            )

        return self._paginator.paginate(req, len(indices), filtered)

    def metadata(self, c: Container, req: Request) -> Answer:
        """The container's custom fields (crm_custom_fields), or its configured failure."""
        if c.metadata == "forbidden":
            return FORBIDDEN
        if c.metadata == "missing":
            return NO_ROUTE
        rows: list[dict[str, object]] = []
        for cf in c.custom_fields:
            row: dict[str, object] = {
                "id": cf.id,
                "key": cf.key,
                "type": cf.type,
                "max_length": 200 if KIND.get(cf.type, OTHER) in (TEXT, OTHER) else None,
                "hint": "",
            }
            if c.metadata != "legacy":
                row["lookup__id"] = f"crm__custom_info__{cf.id}"
            rows.append(row)
        return Answer(200, encode(rows))

    def campaigns(self, req: Request) -> Answer:
        return Answer(200, encode(self._campaigns.rows()))

    def series(self, camps: list[Campaign], req: Request, *, products: bool) -> Answer:
        """Call outcomes or product registrations of `camps` for from_date..to_date."""
        window: list[date] = []
        for name in ("from_date", "to_date"):
            raw = req.param(name)
            if raw is None:
                window.append(self._outcomes.today())
                continue
            try:
                if len(raw) != 8 or not raw.isascii() or not raw.isdigit():
                    raise ValueError(raw)
                window.append(date(int(raw[:4]), int(raw[4:6]), int(raw[6:])))
            except ValueError:
                return error(400, f"Invalid {name} {raw!r}: expected a date as YYYYMMDD.")
        lo, hi = window
        listing = self._outcomes.listing(camps, lo, hi, products=products)

        def results(start: int, stop: int) -> bytes:
            key = ("series", products, listing.versions, lo, hi, listing.version, start, stop)
            return self._cache.get(key, lambda: listing.render(start, stop))

        return self._paginator.paginate(req, listing.count, results)
