"""URL routing: a path to its view, as Django's URL resolver would map it, and the order
of the checks every request goes through."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cube_simulator.answers import FORBIDDEN, NO_ROUTE, NOT_FOUND, Answer, error

if TYPE_CHECKING:
    from collections.abc import Callable

    from cube_simulator.answers import Request
    from cube_simulator.auth import Credentials
    from cube_simulator.campaigns import Campaigns
    from cube_simulator.capacity import Capacity
    from cube_simulator.container import Container
    from cube_simulator.faults import FaultPlan
    from cube_simulator.served import ServedBodies
    from cube_simulator.store import Store
    from cube_simulator.views import Views

_SERIES = ("call_outcomes", "product_registrations")


class Router:
    """Routes /api/v1/ paths; a view looks its container or campaign up when it runs."""

    def __init__(
        self,
        store: Store,
        campaigns: Campaigns,
        views: Views,
        credentials: Credentials,
        faults: FaultPlan,
        served: ServedBodies,
        capacity: Capacity,
    ) -> None:
        self._store = store
        self._campaigns = campaigns
        self._views = views
        self._credentials = credentials
        self._faults = faults
        self._served = served
        self._capacity = capacity

    def respond(self, target: str, req: Request) -> Answer:
        """The answer to a request; `target` is its path and query exactly as sent."""
        # Scripted faults come before any other check, authentication included.
        scripted = self._faults.scripted(target)
        if scripted is not None:
            return scripted
        refused = self._capacity.admit()
        if refused is not None:
            return refused
        try:
            return self._answer(req)
        finally:
            self._capacity.leave()

    def _answer(self, req: Request) -> Answer:
        """The answer of a request the server has a worker for."""
        view = self.route(req.path)
        if view is None:
            return NO_ROUTE
        denied = self._credentials.check(req.authorization)
        if denied is not None:
            return denied
        if req.method not in ("GET", "HEAD"):
            return error(405, f'Method "{req.method}" not allowed.')
        answer = self._served.answer(req) or view(req)
        if answer.status != 200:
            return answer
        return self._faults.after_success(answer, req.path + "?" + req.query)

    def route(self, path: str) -> Callable[[Request], Answer] | None:
        """The view of `path` (None: no such URL)."""
        if not path.startswith("/api/v1/"):
            return None
        parts = path[len("/api/v1/") :].removesuffix("/").split("/")
        n = len(parts)
        views = self._views

        def num(i: int) -> int | None:
            return int(parts[i]) if parts[i].isascii() and parts[i].isdigit() else None

        if parts[0] == "campaigns":
            if n == 1:
                return views.campaigns
            cid = num(1)
            if n == 3 and cid is not None and parts[2] in _SERIES:
                products = parts[2] == "product_registrations"

                def campaign_series(req: Request) -> Answer:
                    camp = self._campaigns.by_id.get(cid)
                    if camp is None:
                        return NOT_FOUND
                    if camp.container.access == "forbidden":
                        return FORBIDDEN
                    return views.series([camp], req, products=products)

                return campaign_series
            return None
        if parts == ["call_outcomes"]:
            return lambda req: views.series(self._campaigns.of(None), req, products=False)
        if parts[0] == "assignments" and n >= 3:
            aid = num(1)
            if aid is None:
                return None
            return self._container_route(lambda: self._store.assignments.get(aid), parts[2:])
        if parts[0] == "data_owners" and n >= 4:
            owner = num(1)
            if owner is None:
                return None
            # Call-flow rows, call outcomes and product registrations live under
            # {id}/crm/{crm_type}/, customers and custom fields under {id}/{crm_type}/.
            crm_scoped = parts[2] == "crm"
            crm_type, rest = (parts[3], parts[4:]) if crm_scoped else (parts[2], parts[3:])

            def crm() -> Container | None:
                return self._store.crms.get((owner, crm_type.upper()))

            if crm_scoped and len(rest) == 1 and rest[0] in _SERIES:
                products = rest[0] == "product_registrations"

                def crm_series(req: Request) -> Answer:
                    found = _accessible(crm())
                    if isinstance(found, Answer):
                        return found
                    camps = self._campaigns.of_container(found)
                    return views.series(camps, req, products=products)

                return crm_series
            if crm_scoped != (rest == ["callflow_customers"]):
                return None
            return self._container_route(crm, rest)
        return None

    def _container_route(
        self, lookup: Callable[[], Container | None], rest: list[str]
    ) -> Callable[[Request], Answer] | None:
        """Views shared by assignments and data-owner CRMs (`rest`: the path after them)."""

        def with_container(
            view: Callable[[Container, Request], Answer],
        ) -> Callable[[Request], Answer]:
            def run(req: Request) -> Answer:
                found = _accessible(lookup())
                return found if isinstance(found, Answer) else view(found, req)

            return run

        views = self._views
        if rest == ["customers"]:
            return with_container(views.customers)
        if len(rest) == 2 and rest[0] == "customers":
            return with_container(lambda c, req: views.customer(c, rest[1]))
        if rest == ["callflow_customers"]:
            return with_container(views.callflow)
        if rest == ["crm_custom_fields"]:
            return with_container(views.metadata)
        return None


def _accessible(found: Container | None) -> Container | Answer:
    """The container, or the answer when it does not exist or this user may not see it."""
    if found is None:
        return NOT_FOUND
    return FORBIDDEN if found.access == "forbidden" else found
