"""Retries, throttling, completeness and credential safety under injected faults."""

from __future__ import annotations

import collections
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cube_simulator import Assignment
from tap_cube.api.responses import parse_retry_after
from tests.conftest import (
    PASSWORD,
    USERNAME,
    assert_no_secrets,
    config_for,
    plain_assignment,
    run_tap,
)


def assert_exactly_once(run, sim, assignment_ids):
    keys = [(r["assignment_id"], r["crm__customer_id"]) for r in run.records()]
    assert len(keys) == len(set(keys)), "a record was emitted twice"
    expected = {(a, c["crm__customer_id"]) for a in assignment_ids for c in sim.customers(a)}
    assert set(keys) == expected


@pytest.mark.parametrize("concurrency", [1, 4])
def test_fault_mix_delivers_every_record_once(simulator, tmp_path, concurrency):
    """20,000+ customers, a quarter of all requests failing in every way the notes allow."""
    sim = simulator(
        [plain_assignment(1, 9000), plain_assignment(2, 8000), plain_assignment(3, 4000)],
        failure_rate=0.25,
        max_consecutive_failures=2,
        seed=concurrency,
        page_size=100,  # more requests, so that every kind of fault shows up
    )
    config = config_for(sim, [1, 2, 3], max_concurrent_requests=concurrency)
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_exactly_once(run, sim, [1, 2, 3])
    statuses = collections.Counter(r.status for r in sim.requests)
    faults = sum(n for status, n in statuses.items() if status != 200)
    assert faults >= 0.2 * len(sim.requests) * 0.8  # the fault rate really was that high
    for status in (0, 429, 500, 502, 503, 504):
        assert statuses[status] > 0, statuses
    retries = [line for line in run.stderr.splitlines() if "retry " in line]
    assert retries
    assert all("WARNING" in line and "/api/v1/assignments/" in line for line in retries)
    assert any("invalid JSON" in line for line in retries)  # a truncated 200
    assert_no_secrets(run.stdout, run.stderr)


def test_basic_auth_fault_mix_keeps_password_secret(simulator, tmp_path):
    sim = simulator([plain_assignment(1, 3000)], failure_rate=0.3, seed=7)
    config = config_for(sim, [1], auth_token=None, username=USERNAME, password=PASSWORD)
    run = run_tap(config, tmp_path, env={"TAP_CUBE_LOGLEVEL": "DEBUG"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert_exactly_once(run, sim, [1])
    assert_no_secrets(run.stdout, run.stderr)


def test_retry_after_is_waited_exactly(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200)])
    sim.fail_next(
        "/customers/?page=2",
        429,
        json.dumps({"detail": "Request was throttled."}),
        headers={"Retry-After": "1"},
    )
    config = config_for(sim, [7], max_concurrent_requests=1, max_retry_wait=300)
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    page2 = [r for r in sim.requests if r.query == "page=2" and r.path.endswith("/7/customers/")]
    assert [r.status for r in page2] == [429, 200]
    # A busy machine can only make the wait longer; the log line below shows it was planned
    # as the server's second, not as a jittered backoff.
    assert page2[1].time - page2[0].time >= 0.95
    # the planned wait was the server's, not a jittered backoff
    assert re.search(
        r"retry 1 of 8 in 1\.0 s after 429 .* on /api/v1/assignments/7/customers/"
        r"\?page=2",
        run.stderr,
    )


def test_retry_after_as_http_date():
    when = datetime.now(UTC) + timedelta(hours=1)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None
    # The date has whole seconds, and parsing it cannot take minutes.
    assert 3600 - 120 <= seconds <= 3600
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_after_capped_by_max_retry_wait(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 700)])
    sim.fail_next("/customers/?page=2", 429, headers={"Retry-After": "3600"})
    config = config_for(sim, [7], max_concurrent_requests=1, max_retry_wait=0.2)
    run = run_tap(config, tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr
    assert re.search(r"retry 1 of 8 in 0\.2 s after 429", run.stderr), run.stderr


def test_connection_reset_and_html_errors_are_retried(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1600)])
    sim.fail_next("/customers/?page=2", 0)
    sim.fail_next(
        "/customers/?page=3", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>", times=2
    )
    sim.fail_next("/customers/?page=4", 504, "<html>Gateway Timeout</html>")
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7])
    assert "retries" in run.stderr
    summary = next(
        line for line in run.stderr.splitlines() if "| customers: assignment 7 done" in line
    )
    assert "1600 records, 4 pages, 4 retries" in summary


def test_read_timeout_is_retried_then_reported(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)], latency=1.0)
    config = config_for(sim, [7], request_timeout=0.2, max_retries=1)
    run = run_tap(config, tmp_path)
    assert run.returncode != 0
    assert "giving up" in run.last_stderr_line
    assert "Timeout" in run.last_stderr_line


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"count": 0, "next": null, "results": []}')

    def log_message(self, format, *args):
        pass


@pytest.fixture
def foreign_host():
    """A second local server standing in for a host the tap must never call."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.2", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.2:{server.server_port}", seen
    server.shutdown()
    server.server_close()


def test_next_link_to_another_host_is_not_followed_there(simulator, tmp_path, foreign_host):
    origin, seen = foreign_host
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    first = {
        "count": 1000,
        "next": f"{origin}/api/v1/assignments/7/customers/?page=2",
        "previous": None,
        "results": sim.customers(7)[:500],
    }
    sim.fail_next("/customers/", 200, json.dumps(first), times=2)  # discovery and sync
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert seen == []
    assert_exactly_once(run, sim, [7])


def test_redirect_to_another_host_is_refused(simulator, tmp_path, foreign_host):
    origin, seen = foreign_host
    sim = simulator([plain_assignment(7, 1000)])
    sim.fail_next(
        "/customers/?page=2",
        302,
        headers={"Location": f"{origin}/api/v1/assignments/7/customers/?page=2"},
    )
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode != 0
    assert "only sends credentials to the configured host" in run.last_stderr_line
    assert seen == []
    assert_no_secrets(run.stdout, run.stderr)


def test_redirect_within_the_host_is_followed(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1000)])
    sim.fail_next(
        "/customers/?page=2",
        301,
        headers={"Location": f"{sim.url}/assignments/7/customers/?page=2"},
    )
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7])


@pytest.mark.parametrize("access", ["forbidden", "missing"])
def test_skip_inaccessible_assignments(simulator, tmp_path, access):
    assignments = [plain_assignment(7, 800), plain_assignment(9, 300)]
    if access == "forbidden":
        assignments.append(Assignment(id=8, count=5, access="forbidden"))
    sim = simulator(assignments)
    config = config_for(sim, [7, 8, 9], skip_inaccessible_assignments=True)
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7, 9])
    assert re.search(r"WARNING .*assignment 8 .*skipping it", run.stderr)
    assert re.search(r"WARNING .*skipped because not accessible: assignment 8", run.stderr)
    off = run_tap(config_for(sim, [7, 8, 9]), tmp_path)
    assert off.returncode != 0
    assert "assignment 8" in off.last_stderr_line


def test_duplicates_from_shifted_pages_are_emitted_once(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    customers = sim.customers(7)
    # page 2 starts with the last 20 rows of page 1 (rows were inserted before them)
    shifted = {
        "count": 1020,
        "next": None,
        "previous": None,
        "results": customers[480:500] + customers[500:],
    }
    sim.fail_next("/customers/?page=2", 200, json.dumps(shifted))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7])
    assert "20 records were served twice" in run.stderr
    assert re.search(
        r"WARNING .*assignment 7: the list changed while it was read "
        r"\(this read saw the count change from 1000 to 1020\); reading it again",
        run.stderr,
    )


def test_count_mismatch_is_read_again(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1000)], next_style="same")
    customers = sim.customers(7)
    short = {"count": 1000, "next": None, "previous": None, "results": customers[500:990]}
    sim.fail_next("/customers/?page=2", 200, json.dumps(short))
    run = run_tap(config_for(sim, [7], max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7])
    assert re.search(
        r"WARNING .*assignment 7: the list changed while it was read \(this read served "
        r"990 of the 1000 records its count announced\)",
        run.stderr,
    )


def test_info_summary_per_assignment(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 1200), plain_assignment(8, 0)])
    run = run_tap(config_for(sim, [7, 8]), tmp_path)
    assert re.search(
        r"INFO .*customers: assignment 7 done: 1200 records, 3 pages, 0 retries, "
        r"\d+\.\d s",
        run.stderr,
    )
    assert re.search(r"\| customers: assignment 8 done: 0 records, 1 pages", run.stderr)


@pytest.mark.parametrize("access", ["forbidden", "missing"])
def test_nothing_accessible_is_not_success(simulator, tmp_path, access):
    assignments = [plain_assignment(7, 10)]
    if access == "forbidden":
        assignments += [Assignment(id=8, count=5, access="forbidden")]
    sim = simulator(assignments)
    ids = [8] if access == "forbidden" else [8, 9]
    run = run_tap(config_for(sim, ids, skip_inaccessible_assignments=True), tmp_path)
    assert run.returncode == 1
    last = run.last_stderr_line
    assert re.match(r"tap-cube: error: \w+: nothing was accessible: assignment 8", last), last
    assert "assignment_ids" in last
    assert run.records() == []


@pytest.mark.parametrize("skip", [False, True])
def test_api_url_without_api_v1_blames_api_url(simulator, tmp_path, skip):
    sim = simulator([plain_assignment(7, 10)])
    base = sim.url.removesuffix("/api/v1")
    config = config_for(sim, [7], api_url=base, skip_inaccessible_assignments=skip)
    run = run_tap(config, tmp_path)
    assert run.returncode == 1
    assert "Check api_url" in run.last_stderr_line, run.stderr
    assert "assignment_ids" not in run.last_stderr_line


def test_a_trickling_body_is_bounded_by_request_timeout(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 10)], next_style="same")
    body = json.dumps({"count": 10, "next": None, "results": sim.customers(7)})
    # Each byte arrives well within the read timeout; the whole would take minutes.
    sim.fail_next("/customers/", 200, body, times=3, trickle=0.05)
    run = run_tap(config_for(sim, [7], request_timeout=1, max_retries=1), tmp_path)
    assert run.returncode == 1
    assert "the answer took longer than request_timeout to arrive" in run.last_stderr_line


def test_a_body_cut_short_within_a_character_is_retried(simulator, tmp_path):
    # A proxy cut the answer in the middle of "ø": the rest would come on a retry.
    sim = simulator([plain_assignment(7, 700)])
    sim.fail_next("/customers/?page=2", 200, '{"count": 700, "results": [{"a": "ø'.encode()[:-1])
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_exactly_once(run, sim, [7])
    assert "invalid JSON or UTF-8" in run.stderr


def second_page(sim, name: str) -> str:
    """Page 2 of assignment 7's 700 customers as JSON text, its first customer named `name`."""
    rows = [dict(row) for row in sim.customers(7)[500:]]
    rows[0]["crm__standard_info__name"] = name
    return json.dumps({"count": 700, "next": None, "previous": None, "results": rows},
                      ensure_ascii=False)  # fmt: skip


NAME = "Ærlig Øyvind Åsen"
NOT_UTF8 = "is not UTF-8 and declares no other charset (byte 0x"


def test_a_body_with_a_utf8_bom_is_read(simulator, tmp_path):
    sim = simulator([plain_assignment(7, 700)])
    body = b"\xef\xbb\xbf" + second_page(sim, NAME).encode()
    sim.fail_next("/customers/?page=2", 200, body)
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert NAME in {r["crm__standard_info__name"] for r in run.records()}
    assert "retry" not in run.stderr


@pytest.mark.parametrize("charset", ["iso-8859-1", "latin-1", "windows-1252"])
def test_a_body_in_the_charset_its_content_type_declares_is_read(simulator, tmp_path, charset):
    sim = simulator([plain_assignment(7, 700)])
    body = second_page(sim, NAME).encode(charset)
    content_type = f"application/json; charset={charset.upper()}"
    sim.fail_next("/customers/?page=2", 200, body, headers={"Content-Type": content_type})
    run = run_tap(config_for(sim, [7]), tmp_path)
    assert run.returncode == 0, run.stderr
    assert NAME in {r["crm__standard_info__name"] for r in run.records()}
    assert "retry" not in run.stderr


@pytest.mark.parametrize(
    ("content_type", "encoding", "why"),
    [
        ("application/json", "latin-1", NOT_UTF8),
        ("application/json; charset=utf-8", "latin-1", NOT_UTF8),
        ("application/json; charset=x-no-such", "utf-8", "declares charset x-no-such"),
        ("application/json; charset=us-ascii", "utf-8", "is not us-ascii (byte 0xc3 at"),
    ],
)
def test_a_body_that_cannot_be_decoded_fails_at_once(
    simulator, tmp_path, content_type, encoding, why
):
    sim = simulator([plain_assignment(7, 700)])
    body = second_page(sim, NAME).encode(encoding)
    sim.fail_next("/customers/?page=2", 200, body, headers={"Content-Type": content_type}, times=9)
    run = run_tap(config_for(sim, [7], max_retry_wait=5), tmp_path, timeout=60)
    assert run.returncode == 1
    line = run.last_stderr_line
    assert line.startswith(
        "tap-cube: error: assignment 7: the answer to /api/v1/assignments/7/customers/?page=2 "
    ), line
    assert why in line
    assert "retry" not in run.stderr
    asked = [r for r in sim.requests if r.path.endswith("7/customers/") and "page=2" in r.query]
    assert len(asked) == 1
