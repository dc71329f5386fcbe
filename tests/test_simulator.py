"""The Cube simulator must behave like the real (DRF) service where the tap depends on it."""

from __future__ import annotations

import base64
import collections
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from cube_simulator import (
    Assignment,
    Crm,
    CubeSimulator,
    CustomField,
    demo_assignments,
)

TOKEN = {"Authorization": "Token sim-token"}
ROOT = Path(__file__).resolve().parents[1]


def extra_assignments() -> list[Assignment]:
    fields = [CustomField(64, "Address street", "text")]
    return [
        Assignment(707, 5, fields, metadata="forbidden"),
        Assignment(708, 5, fields, metadata="missing"),
        Assignment(709, 5, fields, metadata="legacy"),
        Assignment(909, 5, fields, access="forbidden"),
    ]


@pytest.fixture(scope="module")
def sim():
    crms = [Crm(7, "B2C", 730, [CustomField(90, "Segment", "text")])]
    with CubeSimulator(
        demo_assignments() + extra_assignments(),
        next_style="same",
        crms=crms,
        today=date(2026, 3, 10),
        outcomes_start=date(2026, 3, 1),
    ) as simulator:
        yield simulator


@pytest.fixture
def session():
    with requests.Session() as s:
        s.headers.update(TOKEN)
        yield s


def resolve(sim: CubeSimulator, link: str) -> str:
    """What a careful client does with `next`: keep path and query, use its own origin."""
    parts = urlsplit(link)
    return f"{sim.origin}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def pages(session: requests.Session, sim: CubeSimulator, path: str) -> list[dict]:
    url: str | None = sim.url + path
    bodies = []
    while url:
        response = session.get(url)
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        url = bodies[-1]["next"] and resolve(sim, bodies[-1]["next"])
    return bodies


def rows(bodies: list[dict]) -> list[dict]:
    return [row for body in bodies for row in body["results"]]


def test_pagination_shape_and_counts(sim, session):
    bodies = pages(session, sim, "/assignments/101/customers/")
    assert [len(b["results"]) for b in bodies] == [500, 500, 500, 500, 137]
    for body in bodies:
        assert list(body) == ["count", "next", "previous", "results"]
        assert body["count"] == 2137
    base = f"{sim.url}/assignments/101/customers/"
    assert bodies[0]["next"] == f"{base}?page=2"
    assert bodies[0]["previous"] is None
    assert bodies[1]["previous"] == base  # page 1 is linked without a page parameter
    assert bodies[2]["previous"] == f"{base}?page=2"
    assert bodies[-1]["next"] is None
    served = rows(bodies)
    assert served == sim.customers(101)
    assert len({r["crm__customer_id"] for r in served}) == 2137
    first = served[0]
    assert first["crm__customer_id"] == "100000"
    assert isinstance(first["crm__standard_info__name"], str)
    assert first["crm__change_log__update_method"] in ("Manual update", "Import")
    names = "".join(str(r["crm__standard_info__name"]) for r in served)
    assert {"æ", "ø", "å"} <= set(names.lower())
    # Integer custom fields are JSON numbers or "", as in the real service.
    values = [r["crm__custom_info__70"] for r in served]
    assert {type(v) for v in values} == {int, str}
    assert {v for v in values if isinstance(v, str)} == {""}


def test_exact_multiple_and_empty_lists(sim, session):
    bodies = pages(session, sim, "/assignments/202/customers")  # no trailing slash is fine too
    assert [len(b["results"]) for b in bodies] == [500, 500]
    assert bodies[-1]["next"] is None
    # 202 shares customer ids with 101: ids are unique per assignment only.
    assert bodies[0]["results"][0]["crm__customer_id"] == "100000"
    assert isinstance(bodies[0]["results"][0]["crm__custom_info__70"], str)

    empty = pages(session, sim, "/assignments/303/customers/")
    assert empty == [{"count": 0, "next": None, "previous": None, "results": []}]
    assert session.get(f"{sim.url}/assignments/303/customers/?page=1").status_code == 200


@pytest.mark.parametrize(
    ("assignment", "query"),
    [(202, "page=3"), (303, "page=2"), (101, "page=0"), (101, "page=abc"), (101, "page=-1")],
)
def test_invalid_page(sim, session, assignment, query):
    response = session.get(f"{sim.url}/assignments/{assignment}/customers/?{query}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


def test_page_size_parameter_is_ignored(sim, session):
    body = session.get(f"{sim.url}/assignments/101/customers/?page_size=10").json()
    assert len(body["results"]) == 500
    assert body["next"] == f"{sim.url}/assignments/101/customers/?page=2&page_size=10"


def test_authentication(sim):
    url = f"{sim.url}/assignments/202/customers/"
    basic = base64.b64encode(b"sim@example.com:sim-password").decode()
    assert requests.get(url, headers=TOKEN, timeout=5).status_code == 200
    assert requests.get(url, headers={"Authorization": f"Basic {basic}"}, timeout=5).ok
    assert requests.get(url, auth=("sim@example.com", "sim-password"), timeout=5).ok

    cases = [
        ({}, "Authentication credentials were not provided."),
        ({"Authorization": "Bearer sim-token"}, "Authentication credentials were not provided."),
        ({"Authorization": "Token wrong"}, "Invalid token."),
        (
            {"Authorization": "Basic " + base64.b64encode(b"sim@example.com:nope").decode()},
            "Invalid username/password.",
        ),
    ]
    for headers, detail in cases:
        response = requests.get(url, headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"detail": detail}


def test_not_found_and_forbidden(sim, session):
    missing = session.get(f"{sim.url}/assignments/4242/customers/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not found."})
    for endpoint in ("customers/", "crm_custom_fields/", "callflow_customers/"):
        forbidden = session.get(f"{sim.url}/assignments/909/{endpoint}")
        assert forbidden.status_code == 403
        assert forbidden.json() == {"detail": "You do not have permission to perform this action."}
    campaigns = session.get(f"{sim.url}/campaigns").json()
    assert 909 not in {c.get("assignment__id") for c in campaigns}


def test_custom_field_metadata(sim, session):
    meta = session.get(f"{sim.url}/assignments/101/crm_custom_fields/").json()
    assert isinstance(meta, list)
    assert meta[0] == {
        "id": 64,
        "key": "Address street",
        "type": "text",
        "max_length": 200,
        "hint": "",
        "lookup__id": "crm__custom_info__64",
    }
    assert {m["type"] for m in meta} == {"text", "integer", "date", "boolean", "choice"}
    listed = {m["lookup__id"] for m in meta}
    record = session.get(f"{sim.url}/assignments/101/customers/").json()["results"][0]
    present = {k for k in record if k.startswith("crm__custom_info__")}
    assert present - listed == {"crm__custom_info__75"}  # the unlisted field

    other = session.get(f"{sim.url}/assignments/202/crm_custom_fields/").json()
    assert {m["id"]: m["type"] for m in other}[70] == "text"
    assert {m["id"]: m["type"] for m in meta}[70] == "integer"

    legacy = session.get(f"{sim.url}/assignments/709/crm_custom_fields/").json()
    assert legacy
    assert all("lookup__id" not in m for m in legacy)
    assert session.get(f"{sim.url}/assignments/707/crm_custom_fields/").status_code == 403
    assert session.get(f"{sim.url}/assignments/708/crm_custom_fields/").status_code == 404
    assert session.get(f"{sim.url}/assignments/708/customers/").status_code == 200


@pytest.mark.parametrize("style", ["foreign", "http", "same", "cursor"])
def test_next_styles(style, session):
    with CubeSimulator([Assignment(1, 25)], page_size=10, next_style=style) as sim:
        path = "/api/v1/assignments/1/customers/"
        first = session.get(f"{sim.url}/assignments/1/customers/", headers={"Host": "cube.test:81"})
        link = first.json()["next"]
        expected = {
            "foreign": f"http://cube-internal.proxy.local:8080{path}?page=2",
            "http": f"http://cube.test:81{path}?page=2",
            "same": f"{sim.origin}{path}?page=2",
        }
        if style == "cursor":
            assert link.startswith(f"{sim.origin}{path}?cursor=")
            assert "page" not in link
        else:
            assert link == expected[style]
        bodies = pages(session, sim, "/assignments/1/customers/")
        assert rows(bodies) == sim.customers(1)
        assert bodies[1]["previous"] is not None
        assert urlsplit(bodies[1]["previous"]).query == ""  # page 1 carries no page/cursor


def test_pages_without_count(session):
    with CubeSimulator([Assignment(1, 25)], page_size=10, next_style="same") as sim:
        sim.counts = False
        bodies = pages(session, sim, "/assignments/1/customers/")
        assert all(set(body) == {"next", "previous", "results"} for body in bodies)
        assert rows(bodies) == sim.customers(1)
        sim.counts = True
        assert pages(session, sim, "/assignments/1/customers/")[0]["count"] == 25


def test_next_keeps_other_parameters(sim, session):
    bodies = pages(session, sim, "/assignments/101/callflow_customers/?call_state=Ny")
    base = f"{sim.url}/assignments/101/callflow_customers/"
    assert bodies[0]["next"] == f"{base}?call_state=Ny&page=2"  # sorted, as DRF does
    served = rows(bodies)
    assert served == sim.callflow_customers(101, "Ny")
    assert 0 < len(served) == bodies[0]["count"] < 2137
    assert {r["callflow__callstate__name"] for r in served} == {"Ny"}
    assert {"callflow__attempts_status__attempts", "product__BB100"} <= set(served[0])


def test_fault_injection_respects_max_consecutive_failures(session):
    with CubeSimulator(demo_assignments(), failure_rate=1.0, max_consecutive_failures=2) as sim:
        kinds = set()
        for page in (1, 2, 3):
            url = f"{sim.url}/assignments/101/customers/?page={page}"
            outcome = []
            for _ in range(6):
                try:
                    response = session.get(url, timeout=5)
                except requests.ConnectionError:
                    outcome.append(False)
                    kinds.add("reset")
                    continue
                ok = response.status_code == 200
                if ok:
                    try:
                        response.json()
                    except ValueError:
                        ok = False
                        kinds.add("truncated")
                else:
                    kinds.add(str(response.status_code))
                outcome.append(ok)
            assert outcome == [False, False, True, False, False, True]
        assert len(kinds) >= 3
        assert [r.status for r in sim.requests].count(200) >= 6


@pytest.mark.parametrize("kind", ["429", "500", "502", "503", "504", "reset", "truncated"])
def test_fault_kinds(kind, session):
    with CubeSimulator(
        [Assignment(1, 3)],
        failure_rate=1.0,
        failure_kinds=(kind,),
        max_consecutive_failures=1,
        retry_after="7",
    ) as sim:
        url = f"{sim.url}/assignments/1/customers/"
        if kind == "reset":
            with pytest.raises(requests.ConnectionError):
                session.get(url, timeout=5)
        else:
            response = session.get(url, timeout=5)
            if kind == "truncated":
                assert response.status_code == 200
                assert len(response.content) == int(response.headers["Content-Length"])
                with pytest.raises(ValueError):  # noqa: PT011 - any JSON decode error
                    response.json()
            else:
                assert response.status_code == int(kind)
            if kind == "429":
                assert response.headers["Retry-After"] == "7"
                assert "throttled" in response.json()["detail"]
            if kind in ("502", "503", "504"):
                assert response.headers["Content-Type"] == "text/html"
                assert response.text.startswith("<html>")
        assert session.get(url, timeout=5).json()["count"] == 3
        assert [r.status for r in sim.requests][-1] == 200


def test_scripted_faults(sim, session):
    url = f"{sim.url}/assignments/202/customers/?page=2"
    sim.fail_next("202/customers/?page=2", 503, "<html>down</html>", times=2)
    sim.fail_next("303/customers", 0)
    assert [session.get(url).status_code for _ in range(3)] == [503, 503, 200]
    with pytest.raises(requests.ConnectionError):
        session.get(f"{sim.url}/assignments/303/customers/")
    assert session.get(f"{sim.url}/assignments/303/customers/").status_code == 200
    sim.fail_next("/customers/", 429, '{"detail": "slow down"}', headers={"Retry-After": "2"})
    throttled = session.get(url)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "2")
    sim.fail_next("202/customers/", 500)
    sim.forget_scripted_faults()
    assert session.get(url).status_code == 200


def test_mutations_are_visible(session):
    with CubeSimulator([Assignment(5, 30)], page_size=10, next_style="same") as sim:
        sim.update_customer(5, "100012", {"crm__standard_info__name": "Åse Ny", "crm__x": 1})
        page2 = session.get(f"{sim.url}/assignments/5/customers/?page=2").json()["results"]
        assert page2[2]["crm__standard_info__name"] == "Åse Ny"
        assert page2[2]["crm__x"] == 1
        assert sim.customers(5)[12] == page2[2]

        sim.set_count(5, 25)
        body = session.get(f"{sim.url}/assignments/5/customers/?page=3").json()
        assert (body["count"], len(body["results"]), body["next"]) == (25, 5, None)

        # Rows added before the first one shift every page boundary.
        before = session.get(f"{sim.url}/assignments/5/customers/").json()["results"]
        sim.set_count(5, 28, at="start")
        after = session.get(f"{sim.url}/assignments/5/customers/?page=2").json()["results"]
        assert after[:3] == before[-3:]
        assert session.get(f"{sim.url}/assignments/5/customers/?page=3").json()["count"] == 28


def test_campaigns_and_call_outcomes(sim, session):
    campaigns = session.get(f"{sim.url}/campaigns").json()
    assert session.get(f"{sim.url}/campaigns/").json() == campaigns
    ours = [c for c in campaigns if c.get("assignment__id") == 101]
    assert [c["campaign__id"] for c in ours] == [1011, 1012]
    assert {"campaign__is_active", "campaign__archived_date", "client__id"} <= set(ours[0])

    url = f"{sim.url}/campaigns/1011/call_outcomes/"
    today = session.get(url).json()
    assert today["count"] == 3
    assert {r["call_outcome__report_as__submitted_when"][:10] for r in today["results"]} == {
        "2026-03-10"
    }
    window = session.get(url, params={"from_date": "20260201", "to_date": "20260305"}).json()
    assert window["count"] == 5 * 3  # outcomes exist from 1 March only
    row = window["results"][0]
    # As CallOutcomes.md writes it: milliseconds and an offset without a colon (winter).
    assert re.fullmatch(
        r"2026-03-0[1-5]T[0-9:]{8}\.[0-9]{3}\+0100",
        row["call_outcome__report_as__submitted_when_timestamp"],
    )
    assert {"crm__customer_id", "call_outcome__type", "segment__name", "campaign__name"} <= set(row)
    assert sim.call_outcomes(1011, date(2026, 2, 1), date(2026, 3, 5)) == window["results"]

    late = sim.add_call_outcome(
        1011, date(2026, 3, 2), {"call_outcome__comment": "Etterregistrert"}
    )
    again = session.get(url, params={"from_date": "20260302", "to_date": "20260302"}).json()
    assert again["count"] == 4
    assert again["results"][-1] == late
    assert late["call_outcome__comment"] == "Etterregistrert"

    bad = session.get(url, params={"from_date": "2026-03-01"})
    assert bad.status_code == 400
    assert "detail" in bad.json()
    assert session.get(f"{sim.url}/campaigns/999999/call_outcomes/").status_code == 404
    asked = [r.query for r in sim.requests if r.path.endswith("/call_outcomes/")]
    assert "from_date=20260201&to_date=20260305" in asked


def test_data_owner_endpoints(sim, session):
    bodies = pages(session, sim, "/data_owners/7/B2C/customers/")
    assert [len(b["results"]) for b in bodies] == [500, 230]
    assert rows(bodies) == sim.crm_customers(7, "B2C")
    assert rows(bodies)[0]["crm__customer_id"] == "500000"
    meta = session.get(f"{sim.url}/data_owners/7/B2C/crm_custom_fields/").json()
    assert [m["id"] for m in meta] == [90]
    flow = session.get(f"{sim.url}/data_owners/7/crm/B2C/callflow_customers/").json()
    assert flow["count"] == 730
    assert "callflow__callstate__name" in flow["results"][0]
    assert session.get(f"{sim.url}/data_owners/7/B2B/customers/").status_code == 404
    assert session.get(f"{sim.url}/data_owners/8/B2C/customers/").status_code == 404


def test_data_owner_outcomes_and_product_registrations(session):
    fields = [CustomField(64, "Adresse", "text")]
    crms = [Crm(7, "B2C", 300, fields), Crm(7, "B2B", 40), Crm(8, "B2C", 50, access="forbidden")]
    window = {"from_date": "20260301", "to_date": "20260310"}
    with CubeSimulator(
        [], crms=crms, next_style="same", page_size=7, today=date(2026, 3, 10),
        outcomes_start=date(2026, 3, 1),
    ) as sim:  # fmt: skip
        session.headers.update(TOKEN)
        listed = sim.campaigns()
        assert {(c["data_owner__id"], c["campaign__crm_type"]) for c in listed} == {
            (7, "B2C"),
            (7, "B2B"),
            (8, "B2C"),
        }
        b2c = [int(str(c["campaign__id"])) for c in listed if c["campaign__crm_type"] == "B2C"]
        owner = sim.call_outcomes((7, "B2C"), date(2026, 3, 1), date(2026, 3, 10))
        assert len(owner) == 2 * 10 * 3  # two campaigns, ten days, three a day
        served = pages(session, sim, "/data_owners/7/crm/B2C/call_outcomes/?" + urlencode(window))
        assert rows(served) == owner
        assert [r["campaign__name"] for r in owner[:1]] == [listed[0]["campaign__name"]]
        assert {r["campaign__crm_type"] for r in owner} == {"B2C"}
        everywhere = pages(session, sim, "/call_outcomes/?" + urlencode(window))
        assert rows(everywhere) == sim.call_outcomes(None, date(2026, 3, 1), date(2026, 3, 10))
        assert len(rows(everywhere)) == 2 * 2 * 10 * 3  # data owner 8 is not accessible

        sales = pages(
            session, sim, f"/campaigns/{b2c[0]}/product_registrations/?" + urlencode(window)
        )
        registrations = rows(sales)
        assert registrations == sim.product_registrations(
            b2c[0], date(2026, 3, 1), date(2026, 3, 10)
        )
        assert registrations, "the demo window has sales"
        assert all(r["call_outcome__type"] == "Salg" for r in registrations)
        assert {"product__code", "product__title", "product__price"} <= set(registrations[0])
        anonymized = [r for r in registrations if r["crm__customer_id"] == ""]
        assert anonymized
        assert {r["crm__standard_info__name"] for r in anonymized} == {"Anonymized"}
        # As Products.md shows them: only the local minute, no timestamp.
        assert not any(
            "call_outcome__report_as__submitted_when_timestamp" in r for r in registrations
        )
        twice = collections.Counter(
            (r["crm__customer_id"], r["call_outcome__report_as__submitted_when"])
            for r in registrations
        )
        assert max(twice.values()) == 2  # a sale of two products: one customer, one minute
        per_owner = pages(
            session, sim, "/data_owners/7/crm/B2C/product_registrations/?" + urlencode(window)
        )
        assert rows(per_owner) == sim.product_registrations(
            (7, "B2C"), date(2026, 3, 1), date(2026, 3, 10)
        )

        added = sim.add_call_outcome(
            b2c[0], date(2026, 3, 9), anonymized=True,
            products=[{"product__code": "BB100"}, {"product__code": "BB100"}],
        )  # fmt: skip
        assert added["crm__customer_id"] == ""
        assert added["crm__custom_info__64"] == ""
        later = sim.product_registrations(b2c[0], date(2026, 3, 9), date(2026, 3, 9))
        assert [r["product__code"] for r in later[-2:]] == ["BB100", "BB100"]

        assert session.get(f"{sim.url}/data_owners/8/crm/B2C/call_outcomes/").status_code == 403
        assert session.get(f"{sim.url}/data_owners/8/B2C/customers/").status_code == 403
        forbidden = next(c["campaign__id"] for c in listed if c["data_owner__id"] == 8)
        url = f"{sim.url}/campaigns/{forbidden}/product_registrations/"
        assert session.get(url).status_code == 403


def test_documented_quirks(session):
    quirks = ("crm_next_repeats", "product_next_elsewhere")
    with CubeSimulator(
        [], crms=[Crm(7, "B2C", 30)], next_style="http", page_size=2, quirks=quirks,
        today=date(2026, 3, 10), outcomes_start=date(2026, 3, 1),
    ) as sim:  # fmt: skip
        session.headers.update(TOKEN)
        first = session.get(f"{sim.url}/data_owners/7/B2C/customers/").json()
        assert first["next"] == f"{sim.url}/data_owners/7/B2C/customers/"
        second = session.get(f"{sim.url}/data_owners/7/B2C/customers/?page=2").json()
        assert second["next"] == f"{sim.url}/data_owners/7/B2C/customers/?page=2"
        campaign = sim.campaigns()[0]["campaign__id"]
        url = f"{sim.url}/campaigns/{campaign}/product_registrations/"
        body = session.get(url, params={"from_date": "20260301", "to_date": "20260310"}).json()
        # As the notes' example: another list, and another window of it.
        assert body["next"] == (
            f"{sim.url}/campaigns/{campaign}/call_outcomes/?from_date=20260310&to_date=20260310"
        )
        assert body["next"].startswith("http://")
    with pytest.raises(ValueError, match="unknown quirks"):
        CubeSimulator([], quirks=["no_such_quirk"])


def test_request_log_and_latency(session):
    with CubeSimulator([Assignment(1, 10)], latency=2.0) as sim:
        url = f"{sim.url}/assignments/1/customers/"
        threads = [threading.Thread(target=session.get, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The sleeps overlap: each request was taken in while the first still slept.
        arrivals = sorted(r.time for r in sim.requests)
        assert arrivals[-1] - arrivals[0] < 2.0
        requests.get(f"{url}?page=9", timeout=5)
        log = sim.requests
        assert len(log) == 4
        assert [(r.method, r.path, r.status, r.has_authorization) for r in log[:3]] == [
            ("GET", "/api/v1/assignments/1/customers/", 200, True)
        ] * 3
        assert (log[3].query, log[3].status, log[3].has_authorization) == ("page=9", 401, False)
        assert all(not hasattr(r, "authorization") for r in log)


def test_records_are_deterministic():
    one = CubeSimulator(demo_assignments(), seed=3).customers(101)
    assert one == CubeSimulator(demo_assignments(), seed=3).customers(101)
    assert one != CubeSimulator(demo_assignments(), seed=4).customers(101)


@dataclass
class CommandLineRun:
    """A simulator started by its command line: where it listens, and, once it has
    stopped, its exit status and output."""

    url: str = ""
    returncode: int | None = None
    out: str = ""
    err: str = ""


@contextlib.contextmanager
def command_line_simulator(tmp_path, *args: str):
    """`python -m cube_simulator ARGS`, listening until the block ends, then stopped."""
    ready = tmp_path / "url"
    process = subprocess.Popen(
        [sys.executable, "-m", "cube_simulator", *args, "--ready-file", str(ready)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = CommandLineRun()
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        run.url = ready.read_text()
        yield run
    finally:
        process.send_signal(signal.SIGTERM)
        run.out, run.err = process.communicate(timeout=10)
        run.returncode = process.returncode


def test_command_line(tmp_path):
    with command_line_simulator(tmp_path, "--assignment", "1=50", "--page-size", "20") as run:
        url = run.url
        body = requests.get(f"{url}/assignments/1/customers/", headers=TOKEN, timeout=5).json()
        assert (body["count"], len(body["results"])) == (50, 20)
        assert len(body["results"][0]) == 12  # 9 standard fields and 3 custom fields
    assert run.returncode == 0
    assert run.out == f"Cube simulator listening on {url}\n"
    assert run.err == ""


def test_command_line_serves_the_demo_data_beside_a_crm(tmp_path):
    """`--demo-data` keeps the demo's assignments when `--crm` adds a data owner's CRM."""
    with command_line_simulator(tmp_path, "--crm", "3/B2C=40", "--demo-data") as run:
        url = run.url
        demo = requests.get(f"{url}/assignments/101/customers/", headers=TOKEN, timeout=5)
        crm = requests.get(f"{url}/data_owners/3/B2C/customers/", headers=TOKEN, timeout=5)
        assert (demo.json()["count"], crm.json()["count"]) == (2137, 40)
    assert run.err == ""
