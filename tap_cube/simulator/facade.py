"""A fake Headshed Cube REST API (a Django REST Framework server) for tests and benchmarks.

The fake speaks plain HTTP on localhost and mimics what matters to a client of the real
service: token and basic authentication with DRF's error bodies, page-number pagination
with absolute ``next`` links (optionally pointing at another scheme and host, as the real
service does behind its proxy), custom-field metadata, campaigns, call outcomes and
product registrations per day (per campaign, per data owner and globally), call-flow
status, the quirks of the integration notes' examples (opt-in), injected faults
(throttling, proxy errors, resets, truncated bodies) and mutations while a list is being
paged.

Records are never stored: each one is derived from (container, index, seed) by hashing
the index into pools of pre-encoded JSON fragments, so an assignment of a million
customers costs no memory; only edited customers are kept, as overrides. Rendered result
pages go into a small LRU cache, and the page after each one served is rendered ahead.

Use it in-process::

    with CubeSimulator(demo_assignments()) as sim:
        requests.get(f"{sim.url}/assignments/101/customers/",
                     headers={"Authorization": f"Token {sim.token}"})

or from the command line: ``python -m tap_cube.simulator --help``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import queue
import random
import socket
import socketserver
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, timedelta
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from tap_cube.simulator.container import Container as _Container
from tap_cube.simulator.container import Snapshot as _Snap
from tap_cube.simulator.container import anonymize as _anonymize
from tap_cube.simulator.fake_values import EDITORS as _EDITORS
from tap_cube.simulator.fake_values import GOLDEN as _GOLDEN
from tap_cube.simulator.fake_values import KIND as _KIND
from tap_cube.simulator.fake_values import OTHER as _OTHER
from tap_cube.simulator.fake_values import TEXT as _TEXT
from tap_cube.simulator.fake_values import encode as _encode
from tap_cube.simulator.fake_values import mix as _mix
from tap_cube.simulator.model import (
    Assignment,
    Crm,
    CustomField,
    RequestRecord,
    demo_assignments,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterable
    from types import TracebackType

__all__ = [
    "Assignment",
    "Crm",
    "CubeSimulator",
    "CustomField",
    "RequestRecord",
    "demo_assignments",
]


_OUTCOME_TYPES = (
    "Salg", "Salg", "Salg", "Ikke interessert", "Ikke interessert", "Ikke interessert",
    "Ring tilbake", "Feil nummer",
)  # fmt: skip
_OUTCOME_SUBTYPES = {
    "Salg": ("Nytt abonnement", "Oppgradering", "Mersalg"),
    "Ikke interessert": ("Har allerede", "For dyrt", "Ønsker ikke å oppgi grunn", ""),
    "Ring tilbake": ("Ring i kveld", "Ring neste uke"),
    "Feil nummer": ("",),
}
_COMMENTS = (
    "",
    "",
    "Kunden var fornøyd med tilbudet.",
    "Ønsker å bli ringt etter klokka 18.",
    "Vil tenke på det, snakker med ektefellen først.",
    "Hadde ikke tid, ba om å få tilbudet på e-post.",
    "Bytter fra konkurrent når bindingstiden går ut i vår.",
    "Sa nei takk på første spørsmål.",
)
_PRODUCTS = ("Bredbånd 100", "Bredbånd 500", "TV Familie", "Mobil 10 GB")
_BINDING = ("", "12 mnd", "24 mnd", "")
_PROXY_ORIGIN = "http://cube-internal.proxy.local:8080"
_NEXT_STYLES = ("foreign", "http", "same", "cursor")
#: Oddities of the integration notes' examples, served on request:
#: "crm_next_repeats": a data owner's customers list answers with `next` equal to the
#: request URL (no page parameter); "product_next_elsewhere": product-registration pages
#: link to the matching `/call_outcomes/` path (with this list's query).
_QUIRKS = ("crm_next_repeats", "product_next_elsewhere")
_SERIES = ("call_outcomes", "product_registrations")
_PRODUCT_CATALOG = (
    ("BB100", "Bredbånd 100", 499),
    ("BB500", "Bredbånd 500", 699),
    ("TVF", "TV Familie", 399),
    ("MOB10", "Mobil 10 GB", 299),
)
_FAULT_KINDS = ("429", "500", "502", "503", "504", "reset", "truncated")

_JSON = "application/json"
_HTML = "text/html"
_DJANGO_404 = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n'
    b"<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>"
    b"\n</body>\n</html>\n"
)
_PROXY_PAGES = {
    502: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    504: b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
}


def _detail(message: str) -> bytes:
    return _encode({"detail": message})


def _oslo_offset(day: date) -> str:
    """UTC offset of Europe/Oslo in working hours of `day` (no tzdata needed)."""

    def last_sunday(month: int) -> date:
        d = date(day.year, month, 31)
        return d - timedelta(days=(d.weekday() + 1) % 7)

    return "+02:00" if last_sunday(3) <= day < last_sunday(10) else "+01:00"


@dataclass
class _Campaign:
    id: int
    container: _Container
    row: dict[str, object]
    segments: tuple[str, str]
    salt: int


# --------------------------------------------------------------------------- HTTP plumbing


@dataclass
class _Request:
    method: str
    path: str
    query: str
    host: str
    authorization: str | None

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        # Django's QueryDict.get returns the last value of a repeated parameter.
        values = self.params.get(name)
        return values[-1] if values else None


@dataclass
class _Answer:
    status: int  # 0: reset the connection
    body: bytes | Callable[[], bytes] = b""
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()
    paginated: bool = False
    trickle: float = 0.0  # seconds between the bytes of the body

    def render(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else self.body()


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> _Answer:
    return _Answer(status, _detail(message), headers=headers)


_NOT_FOUND = _error(404, "Not found.")
_FORBIDDEN = _error(403, "You do not have permission to perform this action.")
_NO_ROUTE = _Answer(404, _DJANGO_404, "text/html; charset=utf-8")
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"  # for the few answers the stdlib makes itself (400, 501)
    sys_version = ""
    disable_nagle_algorithm = True  # each response is one write; do not let Nagle delay it
    timeout = 120  # idle keep-alive connections end eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the simulator keeps its own request log."""

    def do_GET(self) -> None:
        self.server.sim._serve(self)

    do_HEAD = do_GET

    def _other(self) -> None:
        # Read any body so the keep-alive connection stays in sync, then answer 405.
        length = int(self.headers.get("Content-Length") or 0)
        if length > 0:
            self.rfile.read(length)
        self.server.sim._serve(self)

    do_POST = do_PUT = do_PATCH = do_DELETE = _other


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: CubeSimulator) -> None:
        self.sim = sim
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients dropping connections (and injected resets) are routine here."""

    def track(self, connection: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        # Keep-alive handler threads would otherwise go on serving after stop().
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@dataclass
class _Script:
    substring: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    remaining: int
    trickle: float = 0.0


# --------------------------------------------------------------------------- the simulator


class CubeSimulator:
    """An in-process fake of the Cube API; see the module docstring."""

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
        failure_kinds: tuple[str, ...] = _FAULT_KINDS,
        max_consecutive_failures: int = 2,
        retry_after: str = "0",
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        crms: list[Crm] | None = None,
        outcomes_start: date = date(2026, 1, 1),
        outcomes_per_day: int = 3,
        today: date | None = None,
        cache_pages: int = 32,
        prefetch: bool = True,
        tls: ssl.SSLContext | None = None,
        quirks: Iterable[str] = (),
    ) -> None:
        """Configure the fake; nothing listens until start().

        Beyond the obvious: `next_style` is "foreign" (next links on another scheme and
        host, path kept), "http" (http:// plus the Host the client called), "same" (this
        server's url) or "cursor" (``?cursor=<opaque>`` instead of ``?page=N``).
        `failure_rate` is the share of otherwise successful requests answered with one of
        `failure_kinds`; one URL never fails more than `max_consecutive_failures` times
        in a row. Call outcomes exist from `outcomes_start` to `today` (default: the real
        date), `outcomes_per_day` per campaign and day. Up to `cache_pages` rendered pages
        are kept; with `prefetch` the page after each one served is rendered ahead.
        With a server-side `tls` context it serves https.
        `quirks` turns on oddities of the documented examples (see _QUIRKS).
        """
        if next_style not in _NEXT_STYLES:
            raise ValueError(f"next_style must be one of {_NEXT_STYLES}, not {next_style!r}")
        unknown = set(failure_kinds) - set(_FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown failure kinds: {sorted(unknown)}")
        if page_size < 1:
            raise ValueError("page_size must be positive")
        self.quirks = frozenset(quirks)
        if self.quirks - set(_QUIRKS):
            raise ValueError(f"unknown quirks: {sorted(self.quirks - set(_QUIRKS))}")
        self.token = token
        self.username = username
        self.password = password
        self.page_size = page_size
        self.latency = latency
        self.next_style = next_style
        self.failure_rate = failure_rate
        self.failure_kinds = tuple(failure_kinds)
        self.max_consecutive_failures = max_consecutive_failures
        self.retry_after = retry_after
        self.seed = seed
        self.host = host
        self.port = port
        self.outcomes_start = outcomes_start
        self.outcomes_per_day = outcomes_per_day
        self._today = today
        self.requests: list[RequestRecord] = []

        self._lock = threading.Lock()  # container state, outcome edits, faults, scripts, log
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets
        self._consecutive: dict[str, int] = {}
        self._scripts: list[_Script] = []
        self._cache: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._cache_size = cache_pages
        self._rendering: dict[tuple[object, ...], threading.Event] = {}
        self._prefetch_enabled = prefetch
        self._prefetcher: queue.Queue[Callable[[], object] | None] | None = None
        self._tls = tls
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

        self._assignments: dict[int, _Container] = {}
        self._crms: dict[tuple[int, str], _Container] = {}
        self._campaigns: dict[int, _Campaign] = {}
        for a in assignments:
            self._assignments[a.id] = _Container(
                ("assignment", a.id, ""),
                count=a.count,
                custom_fields=a.custom_fields,
                unlisted_fields=a.unlisted_fields,
                customer_id_start=a.customer_id_start,
                customer_id_style=a.customer_id_style,
                metadata=a.metadata,
                access=a.access,
                messy=a.messy,
                salt=_mix(seed * 0x100000001B3 + a.id * _GOLDEN + 1),
            )
        for crm in crms or []:
            crm_type = crm.crm_type.upper()
            self._crms[(crm.data_owner_id, crm_type)] = _Container(
                ("data_owner", crm.data_owner_id, crm_type),
                count=crm.count,
                custom_fields=crm.custom_fields,
                unlisted_fields=[],
                customer_id_start=crm.customer_id_start,
                metadata="ok",
                access=crm.access,
                salt=_mix(
                    seed * 0x100000001B3 + crm.data_owner_id * _GOLDEN + 2 + (crm_type == "B2B")
                ),
            )
        self._build_campaigns()
        # Call outcomes added or edited by tests, keyed by campaign and day.
        self._outcome_extra: dict[tuple[int, date], list[dict[str, object]]] = {}
        self._outcome_edits: dict[tuple[int, date, int], dict[str, object]] = {}
        # The products of outcomes added by tests, when given; else derived from the row.
        self._outcome_products: dict[tuple[int, date, int], list[dict[str, object]]] = {}
        self._outcome_version = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CubeSimulator:
        """Listen and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), self)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="cube-simulator",
            daemon=True,
        )
        self._thread.start()
        if self._prefetch_enabled:
            jobs: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=4)
            self._prefetcher = jobs
            threading.Thread(
                target=self._prefetch_loop, args=(jobs,), name="cube-prefetch", daemon=True
            ).start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        jobs, self._prefetcher = self._prefetcher, None
        if jobs is not None:
            jobs.put(None)
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> CubeSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """Scheme, host and port of the running server, e.g. "http://127.0.0.1:8123"."""
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host = self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1"  # noqa: S104
        scheme = "http" if self._tls is None else "https"
        return f"{scheme}://{host}:{self._server.server_port}"

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. "http://127.0.0.1:8123/api/v1" (no trailing slash)."""
        return f"{self.origin}/api/v1"

    # ------------------------------------------------------------------ truth and mutations

    def _container(self, key: int | tuple[int, str]) -> _Container:
        found = (
            self._assignments.get(key)
            if isinstance(key, int)
            else self._crms.get((key[0], key[1].upper()))
        )
        if found is None:
            raise KeyError(f"no such container: {key!r}")
        return found

    def _snapshot(self, c: _Container) -> _Snap:
        with self._lock:
            return c.snapshot()

    def customers(self, assignment_id: int) -> list[dict[str, object]]:
        """Every record currently in the assignment, in list order, exactly as served."""
        c = self._container(assignment_id)
        snap = self._snapshot(c)
        return [c.customer(snap.first + p, snap.overrides) for p in range(snap.size)]

    def crm_customers(self, data_owner_id: int, crm_type: str) -> list[dict[str, object]]:
        """Every record currently in a data owner's CRM, as served."""
        c = self._container((data_owner_id, crm_type))
        snap = self._snapshot(c)
        return [c.customer(snap.first + p, snap.overrides) for p in range(snap.size)]

    def callflow_customers(
        self, assignment_id: int | tuple[int, str], call_state: str | None = None
    ) -> list[dict[str, object]]:
        """Call-flow rows as served; pass (data_owner_id, crm_type) for a CRM."""
        c = self._container(assignment_id)
        snap = self._snapshot(c)
        rows = [c.callflow(snap.first + p, snap.overrides) for p in range(snap.size)]
        if call_state:
            rows = [r for r in rows if r["callflow__callstate__name"] == call_state]
        return rows

    def update_customer(
        self, assignment_id: int, customer_id: str, changes: dict[str, object]
    ) -> None:
        """Merge `changes` into a customer for all later requests.

        Keys may be new (a field the record did not have); ``callflow__*`` and
        ``product__*`` keys only show in call-flow rows.
        """
        self._update(self._container(assignment_id), customer_id, changes)

    def update_crm_customer(
        self, data_owner_id: int, crm_type: str, customer_id: str, changes: dict[str, object]
    ) -> None:
        """update_customer for a data owner's CRM."""
        self._update(self._container((data_owner_id, crm_type)), customer_id, changes)

    def _update(self, c: _Container, customer_id: str, changes: dict[str, object]) -> None:
        with self._lock:
            idx = c.index_of(customer_id)
            merged = {**c.overrides.get(idx, {}), **changes}
            # Copy on write, so snapshots taken by in-flight requests stay consistent.
            c.overrides = {**c.overrides, idx: merged}
            c.version += 1

    def set_count(self, assignment_id: int, count: int, *, at: str = "end") -> None:
        """Grow or shrink an assignment, also while it is being paged.

        at="end" adds or removes rows after the last one; at="start" does it before the
        first one, which shifts every page boundary (rows repeat or go missing for a
        client that is half-way through the list).
        """
        self._set_count(self._container(assignment_id), count, at)

    def set_access(self, assignment_id: int, access: str) -> None:
        """Grant ("ok") or revoke ("forbidden") this user's access to an assignment."""
        if access not in ("ok", "forbidden"):
            raise ValueError("access must be 'ok' or 'forbidden'")
        with self._lock:
            self._container(assignment_id).access = access

    def set_crm_count(
        self, data_owner_id: int, crm_type: str, count: int, *, at: str = "end"
    ) -> None:
        """set_count for a data owner's CRM."""
        self._set_count(self._container((data_owner_id, crm_type)), count, at)

    def _set_count(self, c: _Container, count: int, at: str) -> None:
        if count < 0 or at not in ("start", "end"):
            raise ValueError("count must be >= 0 and `at` 'start' or 'end'")
        with self._lock:
            if at == "start":
                c.first += c.count - count
            c.count = count
            c.version += 1

    # ------------------------------------------------------------------ campaigns and outcomes

    def _build_campaigns(self) -> None:
        for aid, c in self._assignments.items():
            for k in (1, 2):
                cid = aid * 10 + k
                active: object = True if k == 1 else (False if aid % 2 == 0 else "")
                row: dict[str, object] = {
                    "campaign__id": cid,
                    "campaign__name": f"{'Vår' if k == 1 else 'Høst'}kampanje oppdrag {aid}",
                    "campaign__start_date": "2020-01-01" if k == 1 else "2021-08-15",
                    "campaign__end_date": "" if k == 1 else "2027-06-30",
                    "campaign__archived_date": "" if k == 1 or aid % 2 else "2026-11-01",
                    "campaign__is_active": active,
                    "assignment__id": aid,
                    "assignment__name": f"Oppdrag {aid} - Bredbånd og TV",
                    "client__id": 1 + aid % 5,
                    "client__short_name": f"Kunde {1 + aid % 5}",
                }
                self._add_campaign(cid, c, row)
        for (owner, crm_type), c in self._crms.items():
            for k in (1, 2):
                cid = 1_000_000 + owner * 10 + (0 if crm_type == "B2C" else 4) + k
                row = {
                    "campaign__id": cid,
                    "campaign__name": f"{crm_type} {'vinter' if k == 1 else 'sommer'} {owner}",
                    "campaign__start_date": "2024-01-01",
                    "campaign__end_date": "",
                    "campaign__archived_date": "",
                    "campaign__is_active": k == 1,
                    "campaign__crm_type": crm_type,
                    "data_owner__id": owner,
                    "data_owner__name": f"Dataeier {owner} AS",
                    "service__id": owner * 10 + k,
                    "service__name": f"Telefonsalg {owner}-{k}",
                }
                self._add_campaign(cid, c, row)

    def _add_campaign(self, cid: int, c: _Container, row: dict[str, object]) -> None:
        name = row["campaign__name"]
        self._campaigns[cid] = _Campaign(
            id=cid,
            container=c,
            row=row,
            segments=(f"{name} - nye kunder", f"{name} - eksisterende kunder"),
            salt=_mix(self.seed * 0x100000001B3 + cid * _GOLDEN + 7),
        )

    def campaigns(self) -> list[dict[str, object]]:
        """The campaign rows as served by /campaigns.

        Forbidden assignments are left out; forbidden data owners' CRMs are listed (that is
        how a user finds them), though their endpoints answer 403.
        """
        return [dict(x.row) for x in self._campaigns.values() if self._listed(x)]

    @staticmethod
    def _listed(camp: _Campaign) -> bool:
        return camp.container.access == "ok" or camp.container.key[0] == "data_owner"

    def update_campaign(self, campaign_id: int, changes: dict[str, object]) -> None:
        """Merge `changes` into a campaign row (new keys are new attributes)."""
        with self._lock:
            camp = self._campaigns[campaign_id]
            camp.row = {**camp.row, **changes}

    def today(self) -> date:
        """The simulator's idea of today (the `today` argument, else the real date)."""
        return self._today or date.today()

    def _days(self, camp: _Campaign, lo: date, hi: date, snap: _Snap) -> list[tuple[date, int]]:
        lo = max(lo, self.outcomes_start)
        hi = min(hi, self.today())
        per_day = self.outcomes_per_day if snap.size else 0
        days = []
        day = lo
        while day <= hi:
            days.append((day, per_day + len(self._outcome_extra.get((camp.id, day), ()))))
            day += timedelta(days=1)
        return days

    @staticmethod
    def _outcome_hash(camp: _Campaign, day: date, k: int) -> int:
        return _mix(camp.salt + day.toordinal() * _GOLDEN + k * 0x51ED27)

    def _outcome(self, camp: _Campaign, snap: _Snap, day: date, k: int) -> dict[str, object]:
        # Rows 0 .. per_day-1 of a day are generated, later ones were added by tests.
        per_day = self.outcomes_per_day if snap.size else 0
        h = self._outcome_hash(camp, day, k)
        idx = snap.first + (h % snap.size if snap.size else 0)
        rec = camp.container.customer(idx, snap.overrides)
        if k < per_day and (h >> 59) & 7 == 0:
            # One in eight customers has since been anonymized (their rows stay: real sales).
            _anonymize(rec)
        if k < per_day:  # spread over working hours, in order of k
            slot = 600 // per_day
            minute = 480 + k * slot + (h >> 20) % slot
        else:  # added later: in the evening, after the generated ones
            minute = 1140 + min(k - per_day, 299)
        stamp = f"{day} {minute // 60:02d}:{minute % 60:02d}"
        kind = _OUTCOME_TYPES[(h >> 40) & 7]
        subtypes = _OUTCOME_SUBTYPES[kind]
        rec["call_outcome__type"] = kind
        rec["call_outcome__subtype"] = subtypes[(h >> 44) % len(subtypes)]
        rec["call_outcome__comment"] = _COMMENTS[(h >> 48) & 7]
        rec["call_outcome__report_as__submitted_by"] = _EDITORS[(h >> 36) & 7]
        rec["call_outcome__report_as__submitted_in_department"] = "Default"
        rec["call_outcome__report_as__submitted_when"] = stamp
        rec["call_outcome__report_as__submitted_when_timestamp"] = (
            f"{day}T{stamp[11:]}:{(h >> 32) % 60:02d}{_oslo_offset(day)}"
        )
        rec["call_outcome__extra__Produkt"] = _PRODUCTS[(h >> 52) & 3] if kind == "Salg" else ""
        rec["call_outcome__extra__Bindingstid"] = _BINDING[(h >> 54) & 3] if kind == "Salg" else ""
        rec["call_outcome__extra__Ønsket oppstart"] = (
            str(day + timedelta(days=14 + (h >> 56) % 30)) if kind == "Salg" else ""
        )
        rec["call_outcome__additional_input_text"] = (
            f"Followup time: Between {day:%d.%m.%Y} 08:00 and {day:%d.%m.%Y} 21:00 \n"
            if kind == "Ring tilbake"
            else ""
        )
        rec["campaign__name"] = camp.row["campaign__name"]
        if "campaign__crm_type" in camp.row:
            rec["campaign__crm_type"] = camp.row["campaign__crm_type"]
            rec["data_owner__name"] = camp.row["data_owner__name"]
        rec["segment__name"] = camp.segments[(h >> 62) & 1]
        if k >= per_day:
            rec.update(self._outcome_extra[(camp.id, day)][k - per_day])
        edit = self._outcome_edits.get((camp.id, day, k))
        if edit:
            rec.update(edit)
        return rec

    def _products(self, camp: _Campaign, snap: _Snap, day: date, k: int) -> list[dict[str, object]]:
        """The product registrations of outcome k of `day`: one or two per sale."""
        outcome = self._outcome(camp, snap, day, k)
        given = self._outcome_products.get((camp.id, day, k))
        if given is not None:
            return [{**outcome, **product} for product in given]
        if outcome["call_outcome__type"] != "Salg":
            return []
        p = _mix(self._outcome_hash(camp, day, k) ^ 0x9F0D)
        rows = []
        # Two of the same product happen (two mobile subscriptions in one call).
        for i in range(1 + (p & 1)):
            code, title, price = _PRODUCT_CATALOG[(p >> (2 + 2 * i)) & 3]
            rows.append(
                {
                    **outcome,
                    "product__code": code,
                    "product__title": title,
                    "product__price": price,
                    "product__extra__Bindingstid": _BINDING[(p >> (8 + 2 * i)) & 3],
                    "product__extra__Antall": "" if (p >> 12) & 1 else 1 + (p >> 13) % 3,
                }
            )
        return rows

    def _series_rows(
        self,
        segments: list[tuple[_Campaign, _Snap, list[tuple[date, int]]]],
        start: int,
        stop: int,
    ) -> list[dict[str, object]]:
        """Rows start..stop of the outcomes of several campaigns, campaign after campaign."""
        rows: list[dict[str, object]] = []
        pos = 0
        for camp, snap, days in segments:
            for day, n in days:
                if pos + n > start and pos < stop:
                    for k in range(max(0, start - pos), min(n, stop - pos)):
                        rows.append(self._outcome(camp, snap, day, k))
                pos += n
                if pos >= stop:
                    return rows
        return rows

    def _product_rows(
        self, segments: list[tuple[_Campaign, _Snap, list[tuple[date, int]]]]
    ) -> list[dict[str, object]]:
        return [
            row
            for camp, snap, days in segments
            for day, n in days
            for k in range(n)
            for row in self._products(camp, snap, day, k)
        ]

    def _segments(
        self, camps: Iterable[_Campaign], lo: date, hi: date
    ) -> list[tuple[_Campaign, _Snap, list[tuple[date, int]]]]:
        """Call under the lock: each campaign with its container's snapshot and its days."""
        found = []
        for camp in camps:
            snap = camp.container.snapshot()
            found.append((camp, snap, self._days(camp, lo, hi, snap)))
        return found

    def _series_campaigns(self, of: int | tuple[int, str] | None) -> list[_Campaign]:
        """A campaign, the campaigns of a data owner's CRM, or (None) every accessible one."""
        if isinstance(of, int):
            return [self._campaigns[of]]
        if of is None:
            return [c for c in self._campaigns.values() if c.container.access == "ok"]
        container = self._container(of)
        return [c for c in self._campaigns.values() if c.container is container]

    def call_outcomes(
        self,
        campaign_id: int | tuple[int, str] | None,
        from_day: date | None = None,
        to_day: date | None = None,
    ) -> list[dict[str, object]]:
        """The outcome rows a request for [from_day, to_day] gets (default: today only).

        Of a campaign, of (data_owner_id, crm_type), or with None of /call_outcomes/.
        """
        camps = self._series_campaigns(campaign_id)
        with self._lock:
            segments = self._segments(camps, from_day or self.today(), to_day or self.today())
            return self._series_rows(segments, 0, sum(n for s in segments for _, n in s[2]))

    def product_registrations(
        self,
        campaign_id: int | tuple[int, str],
        from_day: date | None = None,
        to_day: date | None = None,
    ) -> list[dict[str, object]]:
        """The product registrations of a campaign or of (data_owner_id, crm_type)."""
        camps = self._series_campaigns(campaign_id)
        with self._lock:
            segments = self._segments(camps, from_day or self.today(), to_day or self.today())
            return self._product_rows(segments)

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
        camp = self._campaigns[campaign_id]
        changes = dict(changes or {})
        if anonymized:
            blank: dict[str, object] = {}
            _anonymize(blank, camp.container.customer(camp.container.first, {}))
            changes = {**blank, **changes}
        with self._lock:
            extra = self._outcome_extra.setdefault((campaign_id, day), [])
            extra.append(changes)
            self._outcome_version += 1
            snap = camp.container.snapshot()
            per_day = self.outcomes_per_day if snap.size else 0
            k = per_day + len(extra) - 1
            if products is not None:
                self._outcome_products[(campaign_id, day, k)] = [dict(p) for p in products]
            return self._outcome(camp, snap, day, k)

    def update_call_outcome(
        self, campaign_id: int, day: date, position: int, changes: dict[str, object]
    ) -> None:
        """Merge `changes` into the outcome at `position` (0-based) within `day`."""
        if campaign_id not in self._campaigns:
            raise KeyError(f"no campaign {campaign_id}")
        with self._lock:
            key = (campaign_id, day, position)
            self._outcome_edits[key] = {**self._outcome_edits.get(key, {}), **changes}
            self._outcome_version += 1

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
        as is (it need not be UTF-8); with `trickle`, the body is sent one byte at a time,
        `trickle` seconds apart. These come before any other check, including
        authentication, and do not count against max_consecutive_failures.
        """
        with self._lock:
            self._scripts.append(
                _Script(
                    path_substring,
                    status,
                    body if isinstance(body, bytes) else body.encode(),
                    tuple((headers or {}).items()),
                    times,
                    trickle,
                )
            )

    def _scripted(self, target: str) -> _Answer | None:
        with self._lock:
            for script in self._scripts:
                if script.remaining > 0 and script.substring in target:
                    script.remaining -= 1
                    if script.remaining == 0:
                        self._scripts.remove(script)
                    html = script.body.lstrip().startswith(b"<")
                    return _Answer(
                        script.status,
                        script.body,
                        _HTML if html else _JSON,
                        script.headers,
                        trickle=script.trickle,
                    )
        return None

    # ------------------------------------------------------------------ request handling

    def _serve(self, handler: _Handler) -> None:
        arrived = time.time()
        path, _, query = handler.path.partition("?")
        req = _Request(
            method=handler.command,
            path=path,
            query=query,
            host=handler.headers.get("Host") or f"{self.host}:{self.port}",
            authorization=handler.headers.get("Authorization"),
        )
        answer = self._scripted(handler.path) or self._answer(req)
        body = answer.render() if answer.status else b""
        # Logged before answering, so a client that got its response finds it in the log.
        with self._lock:
            self.requests.append(
                RequestRecord(
                    req.method, path, query, answer.status, bool(req.authorization), arrived
                )
            )
        if answer.status == 0:
            _reset(handler)
            return
        lines = [
            f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Unknown')}",
            "Server: nginx",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {answer.content_type}",
            f"Content-Length: {len(body)}",
            "Vary: Accept, Cookie",
            "Allow: GET, HEAD, OPTIONS",
        ]
        lines += [f"{name}: {value}" for name, value in answer.headers]
        if handler.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if answer.trickle and req.method != "HEAD":
                handler.wfile.write(head)
                for index in range(len(body)):
                    handler.wfile.write(body[index : index + 1])
                    handler.wfile.flush()
                    time.sleep(answer.trickle)
            else:
                handler.wfile.write(head if req.method == "HEAD" else head + body)
        except OSError:
            handler.close_connection = True

    def _answer(self, req: _Request) -> _Answer:
        view = self._route(req.path)
        if view is None:
            return _NO_ROUTE
        denied = self._authenticate(req.authorization)
        if denied is not None:
            return denied
        if req.method not in ("GET", "HEAD"):
            return _error(405, f'Method "{req.method}" not allowed.')
        answer = view(req)
        if answer.status != 200:
            return answer
        if answer.paginated and self.latency > 0:
            time.sleep(self.latency)
        fault = self._pick_fault(req.path + "?" + req.query)
        return answer if fault is None else _fault(fault, answer, self.retry_after)

    def _authenticate(self, header: str | None) -> _Answer | None:
        challenge = (("WWW-Authenticate", "Token"),)
        keyword, _, credentials = (header or "").strip().partition(" ")
        credentials = credentials.strip()
        if keyword.lower() == "token":
            if not credentials:
                return _error(401, "Invalid token header. No credentials provided.", challenge)
            if " " in credentials:
                message = "Invalid token header. Token string should not contain spaces."
                return _error(401, message, challenge)
            if not hmac.compare_digest(credentials.encode(), self.token.encode()):
                return _error(401, "Invalid token.", challenge)
            return None
        if keyword.lower() == "basic":
            if not credentials:
                return _error(401, "Invalid basic header. No credentials provided.", challenge)
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                message = "Invalid basic header. Credentials not correctly base64 encoded."
                return _error(401, message, challenge)
            user, _, password = decoded.partition(":")
            expected = f"{self.username}:{self.password}".encode()
            if not hmac.compare_digest(f"{user}:{password}".encode(), expected):
                return _error(401, "Invalid username/password.", challenge)
            return None
        return _error(401, "Authentication credentials were not provided.", challenge)

    def _pick_fault(self, target: str) -> str | None:
        if self.failure_rate <= 0 or not self.failure_kinds:
            return None
        with self._lock:
            if self._rng.random() >= self.failure_rate:
                self._consecutive.pop(target, None)
                return None
            failures = self._consecutive.get(target, 0)
            if failures >= self.max_consecutive_failures:
                self._consecutive.pop(target, None)
                return None
            self._consecutive[target] = failures + 1
            return self._rng.choice(self.failure_kinds)

    def _route(self, path: str) -> Callable[[_Request], _Answer] | None:
        """Map a path to its view, as Django's URL resolver would (None: no such URL)."""
        if not path.startswith("/api/v1/"):
            return None
        parts = path[len("/api/v1/") :].removesuffix("/").split("/")
        n = len(parts)

        def num(i: int) -> int | None:
            return int(parts[i]) if parts[i].isascii() and parts[i].isdigit() else None

        if parts[0] == "campaigns":
            if n == 1:
                return self._campaigns_view
            cid = num(1)
            if n == 3 and cid is not None and parts[2] in _SERIES:
                products = parts[2] == "product_registrations"

                def campaign_series(req: _Request) -> _Answer:
                    camp = self._campaigns.get(cid)
                    if camp is None:
                        return _NOT_FOUND
                    if camp.container.access == "forbidden":
                        return _FORBIDDEN
                    return self._series_view([camp], req, products=products)

                return campaign_series
            return None
        if parts == ["call_outcomes"]:
            return lambda req: self._series_view(self._series_campaigns(None), req, products=False)
        if parts[0] == "assignments" and n >= 3:
            aid = num(1)
            if aid is None:
                return None

            def assignment() -> _Container | _Answer:
                c = self._assignments.get(aid)
                if c is None:
                    return _NOT_FOUND
                return _FORBIDDEN if c.access == "forbidden" else c

            return self._container_route(assignment, parts[2:])
        if parts[0] == "data_owners" and n >= 4:
            owner = num(1)
            if owner is None:
                return None
            # Call-flow rows, call outcomes and product registrations live under
            # {id}/crm/{crm_type}/, customers and custom fields under {id}/{crm_type}/.
            crm_scoped = parts[2] == "crm"
            crm_type, rest = (parts[3], parts[4:]) if crm_scoped else (parts[2], parts[3:])

            def crm() -> _Container | _Answer:
                c = self._crms.get((owner, crm_type.upper()))
                if c is None:
                    return _NOT_FOUND
                return _FORBIDDEN if c.access == "forbidden" else c

            if crm_scoped and len(rest) == 1 and rest[0] in _SERIES:
                products = rest[0] == "product_registrations"

                def crm_series(req: _Request) -> _Answer:
                    found = crm()
                    if isinstance(found, _Answer):
                        return found
                    camps = [c for c in self._campaigns.values() if c.container is found]
                    return self._series_view(camps, req, products=products)

                return crm_series
            if crm_scoped != (rest == ["callflow_customers"]):
                return None
            return self._container_route(crm, rest)
        return None

    def _container_route(
        self, lookup: Callable[[], _Container | _Answer], rest: list[str]
    ) -> Callable[[_Request], _Answer] | None:
        """Views shared by assignments and data-owner CRMs (`rest`: the path after them)."""

        def with_container(
            view: Callable[[_Container, _Request], _Answer],
        ) -> Callable[[_Request], _Answer]:
            def run(req: _Request) -> _Answer:
                found = lookup()
                return found if isinstance(found, _Answer) else view(found, req)

            return run

        if rest == ["customers"]:
            return with_container(self._customers_view)
        if len(rest) == 2 and rest[0] == "customers":
            return with_container(lambda c, req: self._customer_view(c, rest[1]))
        if rest == ["callflow_customers"]:
            return with_container(self._callflow_view)
        if rest == ["crm_custom_fields"]:
            return with_container(self._metadata_view)
        return None

    # ------------------------------------------------------------------ views

    def _customers_view(self, c: _Container, req: _Request) -> _Answer:
        return self._list_view(c, req, flow=False)

    def _customer_view(self, c: _Container, customer_id: str) -> _Answer:
        snap = self._snapshot(c)
        try:
            idx = c.index_of(customer_id)
        except KeyError:
            return _NOT_FOUND
        return _Answer(200, _encode(c.customer(idx, snap.overrides)))

    def _callflow_view(self, c: _Container, req: _Request) -> _Answer:
        return self._list_view(c, req, flow=True)

    def _list_view(self, c: _Container, req: _Request, *, flow: bool) -> _Answer:
        """Customers or call-flow rows of a container, one page of them."""
        snap = self._snapshot(c)
        state = req.param("call_state") if flow else None
        if not state:  # django-filter ignores an empty filter value

            def results(start: int, stop: int) -> bytes:
                first = snap.first
                return self._cached(
                    (flow, c.key, snap.version, first + start, stop - start),
                    lambda: c.page(snap, range(first + start, first + stop), flow=flow),
                )

            return self._paginate(req, snap.size, results)

        # Not under the lock: scanning a million rows takes a while, and races are benign.
        indices = c.state_indices(snap, state)

        def filtered(start: int, stop: int) -> bytes:
            return self._cached(
                (flow, c.key, snap.version, state, start, stop),
                lambda: c.page(snap, indices[start:stop], flow=True),
            )

        return self._paginate(req, len(indices), filtered)

    def _metadata_view(self, c: _Container, req: _Request) -> _Answer:
        if c.metadata == "forbidden":
            return _FORBIDDEN
        if c.metadata == "missing":
            return _NO_ROUTE
        rows: list[dict[str, object]] = []
        for cf in c.custom_fields:
            row: dict[str, object] = {
                "id": cf.id,
                "key": cf.key,
                "type": cf.type,
                "max_length": 200 if _KIND.get(cf.type, _OTHER) in (_TEXT, _OTHER) else None,
                "hint": "",
            }
            if c.metadata != "legacy":
                row["lookup__id"] = f"crm__custom_info__{cf.id}"
            rows.append(row)
        return _Answer(200, _encode(rows))

    def _campaigns_view(self, req: _Request) -> _Answer:
        return _Answer(200, _encode(self.campaigns()))

    def _series_view(self, camps: list[_Campaign], req: _Request, *, products: bool) -> _Answer:
        """Call outcomes or product registrations of `camps` for from_date..to_date."""
        window: list[date] = []
        for name in ("from_date", "to_date"):
            raw = req.param(name)
            if raw is None:
                window.append(self.today())
                continue
            try:
                if len(raw) != 8 or not raw.isascii() or not raw.isdigit():
                    raise ValueError(raw)
                window.append(date(int(raw[:4]), int(raw[4:6]), int(raw[6:])))
            except ValueError:
                return _error(400, f"Invalid {name} {raw!r}: expected a date as YYYYMMDD.")
        lo, hi = window
        with self._lock:
            segments = self._segments(camps, lo, hi)
            version = self._outcome_version
            # Sales are few: render them all now, and page through the list.
            sales = self._product_rows(segments) if products else []
        count = len(sales) if products else sum(n for s in segments for _, n in s[2])

        def results(start: int, stop: int) -> bytes:
            def render() -> bytes:
                if products:
                    return _encode(sales[start:stop])
                with self._lock:
                    return _encode(self._series_rows(segments, start, stop))

            versions = tuple((s[0].id, s[1].version) for s in segments)
            key = ("series", products, versions, lo, hi, version, start, stop)
            return self._cached(key, render)

        return self._paginate(req, count, results)

    # ------------------------------------------------------------------ pagination

    def _paginate(self, req: _Request, count: int, results: Callable[[int, int], bytes]) -> _Answer:
        """DRF PageNumberPagination: validate the page now, render the body lazily."""
        pages = max(1, -(-count // self.page_size))
        page = self._page_number(req, pages)
        if isinstance(page, _Answer):
            return page
        start = (page - 1) * self.page_size
        stop = min(count, start + self.page_size)
        following = self._link(req, page + 1) if page < pages else b"null"
        if page < pages and "crm_next_repeats" in self.quirks and _is_crm_customers(req.path):
            # As the notes' example: `next` is the URL just requested, page and all.
            following = _encode(
                f"{self._origin_for(req)}{req.path}" + (f"?{req.query}" * bool(req.query))
            )
        preceding = self._link(req, page - 1) if page > 1 else b"null"

        def render() -> bytes:
            body = b'{"count":%d,"next":%b,"previous":%b,"results":%b}' % (
                count,
                following,
                preceding,
                results(start, stop),
            )
            if stop < count:
                self._prefetch(lambda: results(stop, min(count, stop + self.page_size)))
            return body

        return _Answer(200, render, paginated=True)

    def _page_number(self, req: _Request, pages: int) -> int | _Answer:
        cursor = req.param("cursor")
        if cursor is not None:
            try:
                decoded = base64.b64decode(cursor.encode("ascii"), validate=True).decode("ascii")
                page = int(parse_qs(decoded)["p"][0])
            except (ValueError, KeyError, UnicodeError, binascii.Error):
                return _error(404, "Invalid cursor")
        else:
            raw = req.param("page") or "1"
            if raw == "last":
                return pages
            try:
                page = int(raw)
            except ValueError:
                return _error(404, "Invalid page.")
        if not 1 <= page <= pages:
            return _error(404, "Invalid page.")
        return page

    def _link(self, req: _Request, page: int) -> bytes:
        """An absolute next/previous link as DRF builds it (parameters sorted)."""
        params = {k: v for k, v in req.params.items() if k not in ("page", "cursor")}
        if page > 1:
            if self.next_style == "cursor":
                token = base64.b64encode(urlencode({"p": page}).encode()).decode()
                params["cursor"] = [token]
            else:
                params["page"] = [str(page)]
        query = urlencode(sorted(params.items()), doseq=True)
        path = req.path
        if "product_next_elsewhere" in self.quirks and path.endswith("/product_registrations/"):
            # As the notes' example: the link names the call-outcomes list instead.
            path = path.removesuffix("/product_registrations/") + "/call_outcomes/"
        return _encode(f"{self._origin_for(req)}{path}" + (f"?{query}" if query else ""))

    def _origin_for(self, req: _Request) -> str:
        if self.next_style == "foreign":
            return _PROXY_ORIGIN
        if self.next_style == "http":
            return f"http://{req.host}"
        return self.origin

    def _cached(self, key: tuple[object, ...], render: Callable[[], bytes]) -> bytes:
        """Render through the page cache; a page being rendered is waited for, not redone."""
        while True:
            with self._lock:
                found = self._cache.get(key)
                if found is not None:
                    self._cache.move_to_end(key)
                    return found
                pending = self._rendering.get(key)
                if pending is None:
                    pending = self._rendering[key] = threading.Event()
                    break
            pending.wait()
        try:
            body = render()
            with self._lock:
                self._cache[key] = body
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        finally:
            with self._lock:
                del self._rendering[key]
            pending.set()
        return body

    def _prefetch(self, render: Callable[[], object]) -> None:
        # Render the next page while the client digests this one: sequential paging
        # then finds every page but the first in the cache.
        if self._prefetcher is not None:
            with contextlib.suppress(queue.Full):
                self._prefetcher.put_nowait(render)

    def _prefetch_loop(self, jobs: queue.Queue[Callable[[], object] | None]) -> None:
        while (job := jobs.get()) is not None:
            with contextlib.suppress(Exception):
                job()


def _is_crm_customers(path: str) -> bool:
    """Whether `path` is /api/v1/data_owners/{id}/{crm_type}/customers/."""
    parts = path.strip("/").split("/")
    return len(parts) == 6 and parts[2] == "data_owners" and parts[5] == "customers"


def _fault(kind: str, answer: _Answer, retry_after: str) -> _Answer:
    if kind == "429":
        message = "Request was throttled. Expected available in 1 second."
        return _error(429, message, (("Retry-After", retry_after),))
    if kind == "500":
        return _error(500, "A server error occurred.")
    if kind in ("502", "503", "504"):
        return _Answer(int(kind), _PROXY_PAGES[int(kind)], _HTML)
    if kind == "reset":
        return _Answer(0)
    body = answer.render()  # "truncated": a complete response whose JSON is cut short
    return _Answer(200, body[: max(1, len(body) // 2)])


def _reset(handler: _Handler) -> None:
    """Drop the connection without an answer (RST, not an orderly close)."""
    handler.close_connection = True
    connection = handler.connection
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.close()
