"""The simulator's capacity model: workers, a queue, 429 beyond it, latency under load, bursts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from cube_simulator import CapacityModel
from cube_simulator.capacity import Capacity
from tests.conftest import TOKEN, plain_assignment

HANG_GUARD = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_workers_serve_the_queue_waits_and_beyond_it_429_with_retry_after():
    capacity = Capacity(CapacityModel(workers=2, queue=1, retry_after=3))
    assert capacity.admit() is None
    assert capacity.admit() is None
    admitted = threading.Event()

    def third() -> None:
        assert capacity.admit() is None  # waits for a worker
        admitted.set()

    waiting = threading.Thread(target=third)
    waiting.start()
    deadline = time.monotonic() + HANG_GUARD
    while capacity.in_flight < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not admitted.is_set()
    refused = capacity.admit()
    assert refused is not None
    assert refused.status == 429
    assert ("Retry-After", "3") in refused.headers
    capacity.leave()  # a worker is free: the waiting request gets it
    assert admitted.wait(HANG_GUARD)
    waiting.join(HANG_GUARD)
    assert (capacity.busiest, capacity.refused, capacity.in_flight) == (3, 1, 2)


def test_without_a_model_every_request_is_served_and_the_busiest_moment_kept():
    capacity = Capacity(CapacityModel())
    for _ in range(50):
        assert capacity.admit() is None
    for _ in range(50):
        capacity.leave()
    assert (capacity.busiest, capacity.refused, capacity.in_flight) == (50, 0, 0)


def test_latency_is_multiplied_above_the_load_it_serves_well():
    capacity = Capacity(CapacityModel(slow_above=2, slowdown=2.0))
    factors = []
    for _ in range(3):
        capacity.admit()
        factors.append(capacity.slowdown())
    assert factors == [1.0, 1.0, 2.0]


def test_bursts_refuse_everything_at_the_end_of_each_period():
    clock = FakeClock()
    capacity = Capacity(CapacityModel(bursts=(5.0, 1.0)), clock=clock)
    answers = {}
    for at in (0.0, 3.9, 4.0, 4.9, 5.0, 8.5, 9.2, 10.1):
        clock.now = 100.0 + at
        refused = capacity.admit()
        answers[at] = refused.status if refused is not None else 200
        if refused is None:
            capacity.leave()
    assert answers == {
        0.0: 200,
        3.9: 200,
        4.0: 429,
        4.9: 429,
        5.0: 200,
        8.5: 200,
        9.2: 429,
        10.1: 200,
    }


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"queue": -1}, "must not be negative"),
        ({"bursts": (1.0, 1.0)}, "bursts must last less"),
    ],
)
def test_a_model_without_behaviour_is_refused(model, says):
    with pytest.raises(ValueError, match=says):
        CapacityModel(**model)


def _get_pages(sim, pages: int) -> list[tuple[int, str | None, float]]:
    """Ask for `pages` pages at once: status, Retry-After and seconds of each."""
    url = f"{sim.url}/assignments/1/customers/"

    def get(page: int) -> tuple[int, str | None, float]:
        started = time.monotonic()
        response = requests.get(
            url, params={"page": page}, headers={"Authorization": f"Token {TOKEN}"}, timeout=30
        )
        return response.status_code, response.headers.get("Retry-After"), time.monotonic() - started

    barrier = threading.Barrier(pages)

    def together(page: int) -> tuple[int, str | None, float]:
        barrier.wait(HANG_GUARD)
        return get(page)

    with ThreadPoolExecutor(pages) as pool:
        return list(pool.map(together, range(1, pages + 1)))


def test_the_server_serves_two_queues_one_and_refuses_the_rest(simulator):
    sim = simulator(
        [plain_assignment(1, 500)],
        page_size=50,
        latency=0.3,
        capacity=CapacityModel(workers=2, queue=1),
    )
    answers = _get_pages(sim, 6)
    served = sorted(seconds for status, _, seconds in answers if status == 200)
    refused = [retry for status, retry, _ in answers if status == 429]
    assert len(served) == 3
    assert refused == ["1", "1", "1"]
    assert served[-1] >= 0.55  # the one that waited took two latencies
    assert sim.capacity.busiest == 3
    assert sim.capacity.refused == 3
    assert [r.status for r in sim.requests].count(429) == 3


def test_the_server_slows_down_above_its_load(simulator):
    sim = simulator(
        [plain_assignment(1, 500)],
        page_size=50,
        latency=0.2,
        capacity=CapacityModel(slow_above=1),
    )
    answers = _get_pages(sim, 3)
    assert all(status == 200 for status, _, _ in answers)
    # The first may start alone; the others find it there and take twice as long.
    assert sorted(seconds for _, _, seconds in answers)[-1] >= 0.38
