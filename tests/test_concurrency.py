"""The page pipeline: order, exactly-once, bounded prefetch, pool-wide throttling, cancellation."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

from tap_cube.errors import ApiError, InaccessibleError
from tap_cube.tap import TapCube
from tests.conftest import config_for, plain_assignment, run_tap


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("tap-cube-fetch")]


def customers_stream(sim, ids, **overrides):
    tap = TapCube(config=config_for(sim, ids, **overrides))
    return tap.streams["customers"]


def customer_requests(sim, assignment_id):
    path = f"/api/v1/assignments/{assignment_id}/customers/"
    return [r for r in sim.requests if r.path == path]


def test_order_and_exactly_once_across_assignments(simulator, tmp_path):
    sim = simulator(
        [plain_assignment(1, 2600), plain_assignment(2, 0), plain_assignment(3, 1700)], latency=0.02
    )
    run = run_tap(config_for(sim, [1, 2, 3], max_concurrent_requests=4), tmp_path)
    assert run.returncode == 0, run.stderr
    emitted = [(r["assignment_id"], r["crm__customer_id"]) for r in run.records()]
    expected = [(a, c["crm__customer_id"]) for a in (1, 2, 3) for c in sim.customers(a)]
    assert emitted == expected


def test_sequential_setting_reads_exactly_as_a_next_follower(simulator, tmp_path):
    sim = simulator([plain_assignment(1, 2600)], latency=0.01)
    sequential = run_tap(config_for(sim, [1], max_concurrent_requests=1), tmp_path)
    queries = [r.query for r in customer_requests(sim, 1)]
    # discovery's sample, then page 1, 2, ... strictly in order, one at a time
    assert queries == ["", "", "page=2", "page=3", "page=4", "page=5", "page=6"]
    requests = customer_requests(sim, 1)[1:]
    gaps = [b.time - a.time for a, b in itertools.pairwise(requests)]
    assert all(gap >= 0.01 for gap in gaps)  # each waited for the previous answer
    parallel = run_tap(config_for(sim, [1], max_concurrent_requests=4), tmp_path)
    assert sequential.records() == parallel.records()


def test_prefetch_is_bounded_by_two_pages_per_worker(simulator):
    sim = simulator([plain_assignment(1, 500 * 40)], latency=0.01)
    stream = customers_stream(sim, [1], max_concurrent_requests=3)
    before = len(customer_requests(sim, 1))
    records = iter(stream.get_records({"assignment_id": 1}))
    next(records)
    time.sleep(1.0)  # a slow consumer: the workers must stop after the window
    fetched = len(customer_requests(sim, 1)) - before
    assert fetched <= 1 + 2 * 3
    assert sum(1 for _ in records) == 500 * 40 - 1
    stream.close()
    assert fetch_threads() == []


def test_faults_in_the_middle_of_a_prefetch(simulator, tmp_path):
    sim = simulator([plain_assignment(1, 5000)], latency=0.02)
    sim.fail_next("/customers/?page=3", 503, "<html>busy</html>", times=2)
    sim.fail_next("/customers/?page=4", 0)
    sim.fail_next("/customers/?page=6", 200, '{"count": 5000, "next": null, "resu')
    run = run_tap(config_for(sim, [1], max_concurrent_requests=4), tmp_path)
    assert run.returncode == 0, run.stderr
    emitted = [r["crm__customer_id"] for r in run.records()]
    assert emitted == [c["crm__customer_id"] for c in sim.customers(1)]


def test_a_429_pauses_the_whole_pool(simulator, tmp_path):
    sim = simulator([plain_assignment(1, 500 * 30)])
    sim.fail_next("/customers/?page=4", 429, headers={"Retry-After": "1"})
    run = run_tap(config_for(sim, [1], max_concurrent_requests=4, max_retry_wait=300), tmp_path)
    assert run.returncode == 0, run.stderr
    requests = customer_requests(sim, 1)
    throttled = next(r for r in requests if r.status == 429)
    # requests already on the wire may land just after the 429; after that, silence
    during = [r for r in requests if throttled.time + 0.2 < r.time < throttled.time + 0.95]
    assert during == []
    assert max(r.time for r in requests) >= throttled.time + 0.95
    assert len(run.records()) == 500 * 30


def test_links_without_page_numbers_are_followed_one_by_one(simulator, tmp_path):
    sim = simulator([plain_assignment(1, 2200)], next_style="cursor", latency=0.01)
    run = run_tap(config_for(sim, [1], max_concurrent_requests=4), tmp_path)
    assert run.returncode == 0, run.stderr
    assert [r["crm__customer_id"] for r in run.records()] == [
        c["crm__customer_id"] for c in sim.customers(1)
    ]
    queries = [r.query for r in customer_requests(sim, 1)][2:]
    assert len(queries) == 4
    assert all(q.startswith("cursor=") for q in queries)


def test_count_changing_mid_run_is_read_again_and_nothing_doubled(simulator, caplog):
    sim = simulator([plain_assignment(1, 500 * 8)], latency=0.05)
    stream = customers_stream(sim, [1], max_concurrent_requests=2)
    seen = []
    for index, record in enumerate(stream.get_records({"assignment_id": 1})):
        seen.append(record["crm__customer_id"])
        if index == 0:
            sim.set_count(1, 500 * 8 + 37, at="start")  # every later page boundary shifts
    assert len(seen) == len(set(seen))
    assert set(seen) >= {r["crm__customer_id"] for r in sim.customers(1)}
    messages = "\n".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "the list changed while it was read" in messages
    assert "saw the count change from 4000 to 4037" in messages
    assert fetch_threads() == []


def test_rows_added_beyond_the_predicted_pages_are_followed(simulator):
    sim = simulator([plain_assignment(1, 1000)], latency=0.05)
    stream = customers_stream(sim, [1], max_concurrent_requests=4)
    seen = []
    for index, record in enumerate(stream.get_records({"assignment_id": 1})):
        seen.append(record["crm__customer_id"])
        if index == 0:
            sim.set_count(1, 1300)  # rows appended: a third page appears
    assert len(seen) == len(set(seen)) == 1300


@pytest.mark.parametrize("status", [400, 403])
def test_fatal_error_in_a_worker_ends_promptly_with_no_thread_left(simulator, status):
    sim = simulator([plain_assignment(1, 500 * 100)], latency=0.2)
    sim.fail_next("/customers/?page=3", status, json.dumps({"detail": "Nei."}))
    # a worker sleeping in a long retry wait must be woken and stopped as well
    sim.fail_next("/customers/?page=4", 503, times=5)
    stream = customers_stream(sim, [1], max_concurrent_requests=4, max_retry_wait=60)
    with pytest.raises((ApiError, InaccessibleError)):
        for _ in stream.get_records({"assignment_id": 1}):
            pass
    assert fetch_threads() == []
    requested = len(customer_requests(sim, 1))
    # Neither the rest of the list (100 pages) nor the sleeping worker's retries were sent.
    assert requested < 100
    assert sum("page=4" in r.query for r in customer_requests(sim, 1)) < 1 + 5
    time.sleep(0.5)
    assert len(customer_requests(sim, 1)) == requested  # nothing more was sent
