"""Next links the tap cannot follow: the notes' examples, read on by page number.

The integration notes show a data owner's customers page whose `next` is the request
itself, and product-registration pages whose `next` names `/call_outcomes/` with another
window. The tap reads such lists on by DRF's page number, on the list's own path and
query, under the same count check as every list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cube_simulator import Crm, CustomField
from tap_cube.api.page import Page
from tap_cube.api.paging import CubeNextLinkPaginator, query_for_page, query_pairs
from tests.conftest import config_for, plain_assignment, run_tap
from tests.test_catalog import discovered_catalog

UNUSABLE = "the server's next links are unusable"


def crm(data_owner_id, crm_type="B2C", count=120):
    fields = [CustomField(64, "Adresse", "text"), CustomField(90, "Poeng", "integer")]
    return Crm(data_owner_id, crm_type, count, custom_fields=fields)


def discovering(sim, **overrides):
    config = config_for(sim, [], **overrides)
    del config["assignment_ids"]
    return config


def queries(sim, suffix):
    return [r.query for r in sim.requests if r.path.endswith(suffix)]


def warnings_about_links(stderr):
    return [line for line in stderr.splitlines() if "WARNING" in line and UNUSABLE in line]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_next_link_that_repeats_the_request_reads_on_by_page_number(
    simulator, tmp_path, concurrency
):
    # As the notes' data-owner customers example: `next` is the URL just requested, on
    # the proxy's host (which does not exist: credentials go to the configured one only).
    sim = simulator(
        [], crms=[crm(3, count=120)], page_size=50, next_style="foreign",
        quirks=("crm_next_repeats",),
    )  # fmt: skip
    config = discovering(sim, max_concurrent_requests=concurrency)
    run = run_tap(config, tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    read = [r["crm__customer_id"] for r in run.records("crm_customers")]
    assert sorted(read) == sorted(c["crm__customer_id"] for c in sim.crm_customers(3, "B2C"))
    assert len(read) == len(set(read)) == 120
    warned = warnings_about_links(run.stderr)
    assert len(warned) == 1, warned
    assert "data owner 3 (B2C)" in warned[0]
    # Page 1 twice (discovery's sample, the sync), pages 2 and 3 once each: no loop.
    assert sorted(queries(sim, "/B2C/customers/")) == ["", "", "page=2", "page=3"]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_next_link_to_another_list_reads_on_by_page_number(simulator, tmp_path, concurrency, today):
    # As the notes' product-registration example: `next` names /call_outcomes/ and
    # another window.
    start = today - timedelta(days=4)
    sim = simulator(
        [], crms=[crm(3)], outcomes_start=start, page_size=3, next_style="http",
        quirks=("product_next_elsewhere",),
    )  # fmt: skip
    config = discovering(sim, start_date=start.isoformat(), max_concurrent_requests=concurrency)
    run = run_tap(config, tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    expected = [
        r
        for c in sim.campaigns()
        for r in sim.product_registrations(c["campaign__id"], start, today)
    ]
    assert len(run.records("product_registrations")) == len(expected) > 3
    by_owner = sim.product_registrations((3, "B2C"), start, today)
    assert len(run.records("crm_product_registrations")) == len(by_owner) > 3
    window = f"from_date={start.strftime('%Y%m%d')}&page=2&to_date={today.strftime('%Y%m%d')}"
    assert window in queries(sim, "/product_registrations/")
    # The link's own window of call outcomes is never asked for.
    today_only = f"from_date={today.strftime('%Y%m%d')}&to_date={today.strftime('%Y%m%d')}"
    assert today_only not in queries(sim, "/call_outcomes/")
    warned = warnings_about_links(run.stderr)
    partitions = {line.split(UNUSABLE)[0] for line in warned}
    assert len(warned) == len(partitions), warned  # once per partition and window
    assert any("data owner 3 (B2C)" in line for line in warned)


def test_notes_product_registration_example_reads_on(simulator, tmp_path, today):
    # The notes' first page verbatim in its envelope: count 781, `next` elsewhere.
    start = today - timedelta(days=2)
    sim = simulator([], crms=[crm(3)], outcomes_start=start)
    row = sim.product_registrations((3, "B2C"), start, today)[0]
    elsewhere = {
        "count": 781,
        "next": "https://xxxx.headshed.com/api/v1/data_owners/3/crm/B2C/call_outcomes/"
        "?from_date=20200212&to_date=20200212",
        "previous": None,
        "results": [row],
    }
    config = discovering(sim, start_date=start.isoformat())
    catalog = discovered_catalog(config, tmp_path)  # so the run's first page is the one below
    sim.fail_next("/data_owners/3/crm/B2C/product_registrations/?", 200, json.dumps(elsewhere))
    run = run_tap(config, tmp_path, "--catalog", catalog)
    assert run.returncode == 0, run.stderr
    assert not any("20200212" in r.query for r in sim.requests)
    assert not any(r.path.endswith("/crm/B2C/call_outcomes/") and "page=" in r.query
                   for r in sim.requests)  # fmt: skip
    # Page 2 of the same window, on the product-registration path; then the count
    # changed (781 became the real one), so the list was read again from page 1.
    window = f"from_date={start.strftime('%Y%m%d')}&page=2&to_date={today.strftime('%Y%m%d')}"
    assert window in queries(sim, "/data_owners/3/crm/B2C/product_registrations/")
    assert len(run.records("crm_product_registrations")) == len(
        sim.product_registrations((3, "B2C"), start, today)
    )


@pytest.mark.parametrize("link", ["?page=0", "?page=-1", "", 7])
def test_a_next_that_names_no_page_is_read_on_by_page_number(simulator, tmp_path, link):
    # Pages 1 and 2 of 3 link to no page DRF numbers, or are no link at all.
    sim = simulator([plain_assignment(7, 120)], page_size=50, next_style="same")
    customers = sim.customers(7)
    path = "/assignments/7/customers/"
    following = f"{sim.url}{path}{link}" if isinstance(link, str) and link else link
    for n in (3, 2, 1):
        body = {
            "count": 120,
            "next": following if n < 3 else None,
            "previous": None,
            "results": customers[(n - 1) * 50 : n * 50],
        }
        sim.fail_next(f"{path}?page={n}" if n > 1 else path, 200, json.dumps(body), times=2)
    run = run_tap(config_for(sim, [7]), tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    ids = [r["crm__customer_id"] for r in run.records()]
    assert sorted(ids) == sorted(c["crm__customer_id"] for c in customers)
    assert len(ids) == len(set(ids))
    assert len(warnings_about_links(run.stderr)) == 1
    assert not any("page=0" in r.query or "page=-1" in r.query for r in sim.requests)


def test_page_numbers_that_do_not_add_up_either_stop_with_one_line(simulator, tmp_path):
    # The server ignores `page` and links every page to itself: reading by page number
    # serves the same rows again, which stops the read at once.
    sim = simulator([], crms=[crm(3, count=120)], page_size=50)
    customers = sim.crm_customers(3, "B2C")
    same = {
        "count": 120,
        "next": f"{sim.url}/data_owners/3/B2C/customers/",
        "previous": None,
        "results": customers[:50],
    }
    sim.fail_next("/data_owners/3/B2C/customers/", 200, json.dumps(same), times=100)
    run = run_tap(discovering(sim, max_concurrent_requests=1), tmp_path, timeout=120)
    assert run.returncode == 1
    line = run.last_stderr_line
    assert line.startswith("tap-cube: error: data owner 3 (B2C): "), line
    assert "next links" in line
    assert "page number" in line
    assert "page 2 served only rows already served (50 rows" in line
    assert len(warnings_about_links(run.stderr)) == 1


def test_repeating_link_on_a_list_without_count_still_stops(simulator, tmp_path):
    # Without a count nothing says whether rows remain: one line, no loop.
    sim = simulator([plain_assignment(7, 20)], next_style="same")
    body = {"next": f"{sim.url}/assignments/7/customers/", "results": sim.customers(7)}
    sim.fail_next("/assignments/7/customers/", 200, json.dumps(body), times=10)
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path, timeout=60)
    assert run.returncode == 1
    assert "assignment 7: the server's next link" in run.last_stderr_line
    assert "count" in run.last_stderr_line


def test_later_page_gone_is_decided_by_status_and_shape_not_its_text(simulator, tmp_path):
    # A DRF 404 on a later page, worded in another language: rows were removed while
    # paging, so the list is read again, whatever `detail` says.
    sim = simulator([plain_assignment(7, 1500)])
    sim.fail_next("/customers/?page=3", 404, json.dumps({"detail": "Ugyldig side."}))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    ids = [r["crm__customer_id"] for r in run.records()]
    assert len(ids) == len(set(ids)) == 1500
    assert "reading it again from page 1" in run.stderr


# --- the paginator alone, over generated lists and link styles ---------------------------

LIST_PATH = "/data_owners/3/crm/B2C/product_registrations/"
WINDOW = (("from_date", "20240101"), ("to_date", "20240131"))


def link_for(style, page, pages):
    """The `next` link a server of `style` puts on `page` of `pages`."""
    origin = "http://cube-internal.proxy.local:8080/api/v1"
    if page >= pages:
        return None
    if style == "drf":
        return f"{origin}{LIST_PATH}?from_date=20240101&page={page + 1}&to_date=20240131"
    if style == "repeats":
        suffix = "" if page == 1 else f"&page={page}"
        return f"{origin}{LIST_PATH}?from_date=20240101&to_date=20240131{suffix}"
    if style == "elsewhere":
        return f"{origin}/data_owners/3/crm/B2C/call_outcomes/?from_date=20240131&to_date=20240131"
    return f"?from_date=20240101&page={page + 1}&to_date=20240131"  # relative


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.integers(min_value=0, max_value=2000),
    size=st.integers(min_value=5, max_value=500),
    styles=st.lists(st.sampled_from(["drf", "repeats", "elsewhere", "relative"]), min_size=1),
)
def test_every_page_is_asked_for_once_whatever_the_links(count, size, styles):
    pages = max(1, -(-count // size))
    paginator = CubeNextLinkPaginator("data owner 3 (B2C)", LIST_PATH, WINDOW)
    asked: list[str | None] = [None]
    unusable = []
    while not paginator.finished:
        page = len(asked)
        rows = min(size, count - (page - 1) * size)
        style = styles[(page - 1) % len(styles)]
        body = {"count": count, "next": link_for(style, page, pages), "results": [{}] * rows}
        paginator.advance(Page(body, arrived_at=datetime.now(UTC)))
        unusable.append(paginator.unusable_link is not None)
        if not paginator.finished:
            asked.append(paginator.next_query)
    expected = [None] + [query_for_page(WINDOW, n) for n in range(2, pages + 1)]
    assert [q and query_pairs(q) for q in asked] == [q and query_pairs(q) for q in expected]
    for page, flagged in enumerate(unusable, start=1):
        style = styles[(page - 1) % len(styles)]
        assert flagged == (page < pages and style in ("repeats", "elsewhere"))
