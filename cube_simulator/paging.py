"""DRF page-number pagination: page numbers or cursors, and absolute next/previous links.

The real service sits behind a proxy, so its links may name another scheme and host
(`next_style`); the integration notes' examples show two more oddities (QUIRKS).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from cube_simulator.answers import Answer, error
from cube_simulator.fake_values import encode

if TYPE_CHECKING:
    from collections.abc import Callable

    from cube_simulator.answers import Request
    from cube_simulator.page_cache import PageCache

_PROXY_ORIGIN = "http://cube-internal.proxy.local:8080"
#: How next/previous links look: "foreign" (another scheme and host, path kept, as behind
#: the real service's proxy), "http" (http:// plus the Host the client called), "same"
#: (this server's url) or "cursor" (``?cursor=<opaque>`` instead of ``?page=N``).
NEXT_STYLES = ("foreign", "http", "same", "cursor")
#: Oddities of the integration notes' examples, served on request:
#: "crm_next_repeats": a data owner's customers list answers with `next` equal to the
#: request URL (no page parameter); "product_next_elsewhere": product-registration pages
#: link to the matching `/call_outcomes/` path, for the last day of the window only.
QUIRKS = ("crm_next_repeats", "product_next_elsewhere")


class Paginator:
    """Pages of `page_size` results, linked as `next_style` says (see NEXT_STYLES); with
    `counts` off, pages carry no `count`, as DRF's CursorPagination serves them."""

    def __init__(
        self,
        cache: PageCache,
        server_origin: Callable[[], str],
        page_size: int,
        next_style: str,
        quirks: frozenset[str],
        *,
        counts: bool = True,
    ) -> None:
        self._cache = cache
        self._server_origin = server_origin
        self.page_size = page_size
        self.next_style = next_style
        self.quirks = quirks
        self.counts = counts

    def paginate(self, req: Request, count: int, results: Callable[[int, int], bytes]) -> Answer:
        """DRF PageNumberPagination: validate the page now, render the body lazily."""
        pages = max(1, -(-count // self.page_size))
        page = self._page_number(req, pages)
        if isinstance(page, Answer):
            return page
        start = (page - 1) * self.page_size
        stop = min(count, start + self.page_size)
        following = self._next_link(req, page) if page < pages else b"null"
        preceding = self._link(req, page - 1) if page > 1 else b"null"
        count_field = b'"count":%d,' % count if self.counts else b""

        def render() -> bytes:
            body = b'{%b"next":%b,"previous":%b,"results":%b}' % (
                count_field,
                following,
                preceding,
                results(start, stop),
            )
            if stop < count:
                self._cache.prefetch(lambda: results(stop, min(count, stop + self.page_size)))
            return body

        return Answer(200, render, paginated=True)

    def _page_number(self, req: Request, pages: int) -> int | Answer:
        cursor = req.param("cursor")
        if cursor is not None:
            try:
                decoded = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
                page = int(parse_qs(decoded)["p"][0])
            except (ValueError, KeyError, UnicodeError, binascii.Error):
                return error(404, "Invalid cursor")
        else:
            raw = req.param("page") or "1"
            if raw == "last":
                return pages
            try:
                page = int(raw)
            except ValueError:
                return error(404, "Invalid page.")
        if not 1 <= page <= pages:
            return error(404, "Invalid page.")
        return page

    def _next_link(self, req: Request, page: int) -> bytes:
        """The link to the page after `page`, or what the notes' examples show instead."""
        origin = self._origin_for(req)
        if "crm_next_repeats" in self.quirks and _is_crm_customers(req.path):
            # `next` is the URL just requested, page and all.
            return encode(f"{origin}{req.path}" + (f"?{req.query}" * bool(req.query)))
        if "product_next_elsewhere" in self.quirks and req.path.endswith("/product_registrations/"):
            # `next` names the call-outcomes list, and a window of its own: the last day.
            path = req.path.removesuffix("/product_registrations/") + "/call_outcomes/"
            day = req.param("to_date")
            query = urlencode({"from_date": day, "to_date": day}) if day else ""
            return encode(f"{origin}{path}" + (f"?{query}" if query else ""))
        return self._link(req, page + 1)

    def _link(self, req: Request, page: int) -> bytes:
        """An absolute next/previous link as DRF builds it (parameters sorted)."""
        params = {k: v for k, v in req.params.items() if k not in ("page", "cursor")}
        if page > 1:
            if self.next_style == "cursor":
                token = base64.b64encode(urlencode({"p": page}).encode()).decode()
                params["cursor"] = [token]
            else:
                params["page"] = [str(page)]
        query = urlencode(sorted(params.items()), doseq=True)
        return encode(f"{self._origin_for(req)}{req.path}" + (f"?{query}" if query else ""))

    def _origin_for(self, req: Request) -> str:
        if self.next_style == "foreign":
            return _PROXY_ORIGIN
        if self.next_style == "http":
            return f"http://{req.host}"
        return self._server_origin()


def _is_crm_customers(path: str) -> bool:
    """Whether `path` is /api/v1/data_owners/{id}/{crm_type}/customers/."""
    parts = path.strip("/").split("/")
    return len(parts) == 6 and parts[2] == "data_owners" and parts[5] == "customers"
