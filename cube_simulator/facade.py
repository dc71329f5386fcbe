"""CubeSimulator: the public object, wiring the simulator's parts together.

The fake speaks HTTP on localhost and mimics what matters to a client of the real
service: token and basic authentication with DRF's error bodies (auth.py), page-number
pagination with absolute ``next`` links, optionally on another scheme and host as the
real service sends them behind its proxy (paging.py), custom-field metadata, campaigns,
call outcomes and product registrations (views.py, outcomes.py), call-flow status,
injected faults (faults.py) and mutations while a list is being paged (store.py).

Each request goes: scripted fault, capacity (a worker, a place in the queue, or 429:
capacity.py), route, authentication, method, view, then latency and random faults for a
successful answer (Router.respond).
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Generic, Self, TypeVar, cast, overload
from zoneinfo import ZoneInfo

from cube_simulator.auth import Credentials
from cube_simulator.campaigns import Campaigns
from cube_simulator.capacity import Capacity, CapacityModel
from cube_simulator.faults import FAULT_KINDS, FaultPlan
from cube_simulator.outcomes import CallOutcomes
from cube_simulator.page_cache import PageCache
from cube_simulator.paging import NEXT_STYLES, QUIRKS, Paginator
from cube_simulator.routes import Router
from cube_simulator.served import ServedBodies
from cube_simulator.server import Listener
from cube_simulator.store import Store
from cube_simulator.views import Views

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    from cube_simulator.model import Assignment, Crm, RequestRecord

T = TypeVar("T")


class _Setting(Generic[T]):
    """A setting kept by the part that uses it, read and changed through the simulator
    (tests change some while it runs, e.g. ``sim.latency = 0.5``)."""

    def __init__(self, part: str, name: str = "") -> None:
        self._part = part
        self._name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = self._name or name

    @overload
    def __get__(self, obj: None, owner: type) -> Self: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object, owner: type) -> Self | T:
        if obj is None:
            return self
        return cast("T", getattr(getattr(obj, self._part), self._name))

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self._part), self._name, value)


def _check(
    next_style: str, failure_kinds: tuple[str, ...], page_size: int, quirks: frozenset[str]
) -> None:
    """Refuse arguments the simulator has no behaviour for."""
    if next_style not in NEXT_STYLES:
        raise ValueError(f"next_style must be one of {NEXT_STYLES}, not {next_style!r}")
    unknown = set(failure_kinds) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown failure kinds: {sorted(unknown)}")
    if page_size < 1:
        raise ValueError("page_size must be positive")
    if quirks - set(QUIRKS):
        raise ValueError(f"unknown quirks: {sorted(quirks - set(QUIRKS))}")


class CubeSimulator:
    """An in-process fake of the Cube API; see the package docstring."""

    token = _Setting[str]("_credentials")
    username = _Setting[str]("_credentials")
    password = _Setting[str]("_credentials")
    page_size = _Setting[int]("_paginator")
    next_style = _Setting[str]("_paginator")
    quirks = _Setting[frozenset[str]]("_paginator")
    counts = _Setting[bool]("_paginator")
    latency = _Setting[float]("_faults")
    failure_rate = _Setting[float]("_faults")
    failure_kinds = _Setting[tuple[str, ...]]("_faults")
    max_consecutive_failures = _Setting[int]("_faults")
    retry_after = _Setting[str]("_faults")
    outcomes_start = _Setting[date]("_outcomes", "start")
    outcomes_per_day = _Setting[int]("_outcomes", "per_day")
    host = _Setting[str]("_listener")
    port = _Setting[int]("_listener")

    def __init__(
        self,
        assignments: list[Assignment],
        *,
        token: str = "sim-token",  # noqa: S107 - a fake's well-known credential
        username: str = "sim@example.com",
        password: str = "sim-password",  # noqa: S107
        page_size: int = 500,
        latency: float = 0.0,
        next_style: str = "foreign",
        failure_rate: float = 0.0,
        failure_kinds: tuple[str, ...] = FAULT_KINDS,
        max_consecutive_failures: int = 2,
        retry_after: str = "0",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        crms: list[Crm] | None = None,
        outcomes_start: date = date(2026, 1, 1),
        outcomes_per_day: int = 3,
        today: date | None = None,
        zone: str = "Europe/Oslo",
        cache_pages: int = 32,
        prefetch: bool = True,
        tls: ssl.SSLContext | None = None,
        quirks: Iterable[str] = (),
        counts: bool = True,
        capacity: CapacityModel | None = None,
    ) -> None:
        """Configure the fake; nothing listens until start().

        Beyond the obvious: `next_style` is one of paging.NEXT_STYLES; `failure_rate`,
        `failure_kinds` and `max_consecutive_failures` work as faults.FaultPlan says.
        Call outcomes exist from `outcomes_start` to `today` (default: the real date in
        `zone`, where Cube's days are),
        `outcomes_per_day` per campaign and day. Up to `cache_pages` rendered pages are
        kept; with `prefetch` the page after each one served is rendered ahead. With a
        server-side `tls` context it serves https. `quirks` turns on oddities of the
        documented examples (see paging.QUIRKS). With `counts` off, list pages carry no
        `count` (as DRF's CursorPagination serves them). `capacity` bounds what the
        server takes at once (default: everything, at one speed).
        """
        _check(next_style, failure_kinds, page_size, quirk_set := frozenset(quirks))
        self.seed = seed
        self.requests: list[RequestRecord] = []

        self._store = Store(assignments, crms or [], seed)
        lock = self._store.lock
        self._campaigns = Campaigns(self._store, seed)
        self._outcomes = CallOutcomes(
            self._campaigns, outcomes_start, outcomes_per_day, today or ZoneInfo(zone)
        )
        #: The server's capacity at work: its busiest moment and the requests it refused.
        self.capacity = Capacity(capacity or CapacityModel())
        self._faults = FaultPlan(
            lock,
            latency=latency,
            failure_rate=failure_rate,
            failure_kinds=tuple(failure_kinds),
            max_consecutive_failures=max_consecutive_failures,
            retry_after=retry_after,
            seed=seed,
            slowdown=self.capacity.slowdown,
        )
        self._credentials = Credentials(token, username, password)
        self._cache = PageCache(lock, size=cache_pages, prefetch=prefetch)
        self._paginator = Paginator(
            self._cache, lambda: self.origin, page_size, next_style, quirk_set, counts=counts
        )
        views = Views(self._store, self._campaigns, self._outcomes, self._paginator, self._cache)
        self._served = ServedBodies(lambda: self.origin)
        self._router = Router(
            self._store,
            self._campaigns,
            views,
            self._credentials,
            self._faults,
            self._served,
            self.capacity,
        )
        self._listener = Listener(host, port, tls, self._router.respond, self.requests, self._cache)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CubeSimulator:
        """Listen and serve in a daemon thread; returns self."""
        self._listener.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections."""
        self._listener.stop()

    def __enter__(self) -> CubeSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """Scheme, host and port of the running server, e.g. "http://127.0.0.1:8123"."""
        return self._listener.origin

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. "http://127.0.0.1:8123/api/v1" (no trailing slash)."""
        return f"{self.origin}/api/v1"

    # ------------------------------------------------------------------ customers

    def customers(self, assignment_id: int) -> list[dict[str, object]]:
        """Every record currently in the assignment, in list order, exactly as served."""
        return self._store.customers(assignment_id)

    def crm_customers(self, data_owner_id: int, crm_type: str) -> list[dict[str, object]]:
        """Every record currently in a data owner's CRM, as served."""
        return self._store.customers((data_owner_id, crm_type))

    def callflow_customers(
        self, assignment_id: int | tuple[int, str], call_state: str | None = None
    ) -> list[dict[str, object]]:
        """Call-flow rows as served; pass (data_owner_id, crm_type) for a CRM."""
        return self._store.callflow_customers(assignment_id, call_state)

    def update_customer(
        self, assignment_id: int, customer_id: str, changes: dict[str, object]
    ) -> None:
        """Merge `changes` into a customer for all later requests.

        Keys may be new (a field the record did not have); ``callflow__*`` and
        ``product__*`` keys only show in call-flow rows.
        """
        self._store.update(assignment_id, customer_id, changes)

    def update_crm_customer(
        self, data_owner_id: int, crm_type: str, customer_id: str, changes: dict[str, object]
    ) -> None:
        """update_customer for a data owner's CRM."""
        self._store.update((data_owner_id, crm_type), customer_id, changes)

    def set_count(self, assignment_id: int, count: int, *, at: str = "end") -> None:
        """Grow or shrink an assignment, also while it is being paged.

        at="end" adds or removes rows after the last one; at="start" does it before the
        first one, which shifts every page boundary (rows repeat or go missing for a
        client that is half-way through the list).
        """
        self._store.set_count(assignment_id, count, at)

    def set_access(self, assignment_id: int, access: str) -> None:
        """Grant ("ok") or revoke ("forbidden") this user's access to an assignment."""
        self._store.set_access(assignment_id, access)

    def set_crm_count(
        self, data_owner_id: int, crm_type: str, count: int, *, at: str = "end"
    ) -> None:
        """set_count for a data owner's CRM."""
        self._store.set_count((data_owner_id, crm_type), count, at)

    # ------------------------------------------------------------------ campaigns and outcomes

    def campaigns(self) -> list[dict[str, object]]:
        """The campaign rows as served by /campaigns.

        Forbidden assignments are left out; forbidden data owners' CRMs are listed (that is
        how a user finds them), though their endpoints answer 403.
        """
        return self._campaigns.rows()

    def update_campaign(self, campaign_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a campaign row (new keys are new attributes)."""
        self._campaigns.update(campaign_id, changes)

    def today(self) -> date:
        """The simulator's idea of today (the `today` argument, else the real date in its
        zone)."""
        return self._outcomes.today()

    def call_outcomes(
        self,
        campaign_id: int | tuple[int, str] | None,
        from_day: date | None = None,
        to_day: date | None = None,
    ) -> list[dict[str, object]]:
        """The outcome rows a request for [from_day, to_day] gets (default: today only).

        Of a campaign, of (data_owner_id, crm_type), or with None of /call_outcomes/.
        """
        camps = self._campaigns.of(campaign_id)
        return self._outcomes.call_outcomes(camps, from_day, to_day)

    def product_registrations(
        self,
        campaign_id: int | tuple[int, str],
        from_day: date | None = None,
        to_day: date | None = None,
    ) -> list[dict[str, object]]:
        """The product registrations of a campaign or of (data_owner_id, crm_type)."""
        camps = self._campaigns.of(campaign_id)
        return self._outcomes.product_registrations(camps, from_day, to_day)

    def add_call_outcome(
        self,
        campaign_id: int,
        day: date,
        changes: dict[str, object] | None = None,
        *,
        anonymized: bool = False,
        products: list[dict[str, object]] | None = None,
    ) -> dict[str, object]:
        """Add an outcome to `day` (e.g. a late registration for a window already synced).

        The row is generated like the others (a customer of the campaign's container,
        submitted in the evening of `day`, after that day's generated rows), then
        `changes` are merged in; `anonymized` blanks the customer as Cube does. Its
        product registrations are `products` (each merged over the outcome row), or as
        generated for a sale. Returns the row as it will be served.
        """
        return self._outcomes.add(
            campaign_id, day, changes, anonymized=anonymized, products=products
        )

    def update_call_outcome(
        self, campaign_id: int, day: date, position: int, changes: dict[str, object]
    ) -> None:
        """Merge `changes` into the outcome at `position` (0-based) within `day`."""
        self._outcomes.update(campaign_id, day, position, changes)

    # ------------------------------------------------------------------ served bodies

    def serve(self, path: str, body: bytes | str, window: tuple[date, date] | None = None) -> None:
        """Answer GET `path` (e.g. "/campaigns/140/call_outcomes/") with `body` verbatim.

        For a page whose `count` exceeds its rows, the rows it elides are served on the
        pages after it (see served.py). With `window`, only requests for from_date and
        to_date around it get the body, other windows an empty list. Authentication and
        scripted faults apply as to any request; the path must be one the API routes.
        """
        raw = body.encode() if isinstance(body, str) else body
        self._served.serve(f"/api/v1/{path.lstrip('/')}", raw, window)

    # ------------------------------------------------------------------ scripted faults

    def fail_next(
        self,
        path_substring: str,
        status: int,
        body: str | bytes = "",
        headers: dict[str, str] | None = None,
        times: int = 1,
        trickle: float = 0.0,
    ) -> None:
        """Answer the next `times` requests whose path (with query) contains `path_substring`.

        Status 0 resets the connection without answering. A `body` given as bytes is sent
        as is (it need not be UTF-8); a Content-Type in `headers` replaces the usual one
        (JSON, or HTML for a body that starts with "<"); with `trickle`, the body is sent
        one byte at a time, `trickle` seconds apart. These come before any other check, including
        authentication, and do not count against max_consecutive_failures.
        """
        self._faults.fail_next(path_substring, status, body, headers, times, trickle)

    def forget_scripted_faults(self) -> None:
        """Drop the scripted faults not yet served (a run that ended before it asked for
        their path must not pass them on to the next one)."""
        self._faults.forget_scripted()
