"""The adaptive limit of requests in flight: its decisions on a fake clock, the gate that
applies it, and runs against servers of limited capacity that stay complete."""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests
from singer_sdk.exceptions import RetriableAPIError

from cube_simulator import CapacityModel
from tap_cube.api.client import says_overloaded
from tap_cube.api.concurrency import (
    FLOOR_MEMORY,
    START,
    ConcurrencyLimit,
    Sent,
)
from tap_cube.api.fetch import RequestGate
from tap_cube.api.responses import MalformedPageError, ThrottledError
from tap_cube.errors import Cancelled
from tests.conftest import config_for, plain_assignment, run_tap

HANG_GUARD = 10.0
FLOOR = 0.2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def adaptive(ceiling: int = 16, **kwargs) -> tuple[ConcurrencyLimit, FakeClock]:
    clock = FakeClock()
    return ConcurrencyLimit(ceiling, clock=clock, **kwargs), clock


def send(limit: ConcurrencyLimit, count: int | None = None, *, crowded: bool = True) -> list[Sent]:
    """`count` requests (default: the limit's worth), sent with every slot taken or not."""
    count = limit.current if count is None else count
    in_flight = limit.current if crowded else 0
    return [limit.sent(in_flight) for _ in range(count)]


def answer(limit: ConcurrencyLimit, clock: FakeClock, sent: list[Sent], latency: float) -> None:
    clock.now += latency
    for request in sent:
        limit.answered(request)


def round_trip(limit: ConcurrencyLimit, clock: FakeClock, latency: float = FLOOR) -> int:
    """A round: the limit's worth of crowded requests, answered after `latency`."""
    answer(limit, clock, send(limit), latency)
    return limit.current


def test_starts_at_the_old_default_and_doubles_each_round_up_to_the_ceiling():
    limit, clock = adaptive(ceiling=16)
    assert limit.current == START == 4
    assert [round_trip(limit, clock) for _ in range(4)] == [8, 16, 16, 16]
    assert limit.floor == pytest.approx(FLOOR)


def test_the_limit_never_exceeds_the_ceiling_nor_falls_below_one():
    limit, clock = adaptive(ceiling=5)
    seen = [round_trip(limit, clock, FLOOR) for _ in range(20)]
    assert max(seen) == 5
    for _ in range(10):
        limit.overloaded(send(limit, 1)[0])
    assert limit.current == 1
    assert max(round_trip(limit, clock) for _ in range(50)) == 5


def test_a_limit_that_holds_nothing_back_does_not_grow():
    limit, clock = adaptive(ceiling=16)
    for _ in range(5):
        answer(limit, clock, send(limit, 2, crowded=False), FLOOR)
    assert limit.current == START


def test_a_burst_of_429s_halves_the_limit_once_per_round():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock)
    round_trip(limit, clock)
    assert limit.current == 16
    burst = send(limit)
    for request in burst:  # all sixteen sent before the first 429 came back
        limit.overloaded(request)
    assert limit.current == 8
    # The first request sent after the cut to be refused halves it again.
    limit.overloaded(send(limit, 1)[0])
    assert limit.current == 4


def test_after_a_429_the_limit_grows_by_one_a_round_not_by_doubling():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock)
    limit.overloaded(send(limit, 1)[0])
    assert limit.current == 4
    assert [round_trip(limit, clock) for _ in range(4)] == [5, 6, 7, 8]


def test_a_latency_climb_backs_off_by_a_quarter_once_per_round():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock)
    round_trip(limit, clock)
    assert limit.current == 16
    queued = send(limit)
    answer(limit, clock, queued, 2 * FLOOR)  # the server is queueing: twice the floor
    assert limit.current == 12
    assert round_trip(limit, clock, 2 * FLOOR) == 9
    assert round_trip(limit, clock, 2 * FLOOR) == 6


def test_a_few_slow_pages_are_not_taken_for_a_queue_but_most_are():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock)
    round_trip(limit, clock)
    sent = send(limit)
    answer(limit, clock, sent[:10], FLOOR)
    answer(limit, clock, sent[10:], 2 * FLOOR)  # 6 of 16 slow: a busy page or two
    assert limit.current == 16
    sent = send(limit)
    answer(limit, clock, sent[:6], FLOOR)
    answer(limit, clock, sent[6:], 2 * FLOOR)  # most of them slow: a queue
    assert limit.current == 12


def test_latency_somewhat_above_the_floor_neither_grows_nor_cuts():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock)
    limit.overloaded(send(limit, 1)[0])
    assert limit.current == 4
    for _ in range(5):
        assert round_trip(limit, clock, 1.5 * FLOOR) == 4


def test_a_server_that_recovers_gets_the_limit_back_one_round_at_a_time():
    limit, clock = adaptive(ceiling=8)
    round_trip(limit, clock)
    for _ in range(4):  # overloaded: 503s and timeouts, round after round
        limit.overloaded(send(limit, 1)[0])
    assert limit.current == 1
    climbed = [round_trip(limit, clock) for _ in range(9)]
    assert climbed == [2, 3, 4, 5, 6, 7, 8, 8, 8]


def paced_round(limit: ConcurrencyLimit, clock: FakeClock) -> int:
    """A round in which the tap, not the server, sets the pace (a server on the same
    machine answering at once): each request is answered at the floor, but the next
    goes out only once the tap took the page, so more at once bring no more a second."""
    for _ in range(limit.current):
        answer(limit, clock, send(limit, 1), FLOOR)
    return limit.current


def test_slow_start_ends_where_more_requests_bring_no_more_answers_a_second():
    limit, clock = adaptive(ceiling=16)
    assert paced_round(limit, clock) == 2 * START  # slow start doubles, until...
    assert paced_round(limit, clock) == START  # ...a round trip shows no gain: back
    # From there, a server that sets the pace has it grow by one a round.
    assert [round_trip(limit, clock) for _ in range(13)] == [*range(START + 1, 17), 16]


def test_answers_a_busy_tap_picks_up_late_are_no_queue_at_a_server_answering_at_once():
    """A server on the same machine answers in 2 ms; a tap busy with its records picks
    some answers up 10-20 ms later, its threads waiting their turn. That delay is the
    tap's own, not a queue at the server: no cut (at 1, no page would be fetched while
    the tap processes records)."""
    limit, clock = adaptive(ceiling=16)
    seen = []
    for latency in [0.002, 0.015, 0.02, 0.01] * 10:
        answer(limit, clock, send(limit, 1), latency)
        seen.append(limit.current)
    assert min(seen) >= START


def test_a_server_answering_at_once_that_begins_to_queue_is_backed_off():
    limit, clock = adaptive(ceiling=16)
    assert [round_trip(limit, clock, 0.002) for _ in range(2)] == [8, 16]
    assert round_trip(limit, clock, 0.1) == 12  # 50 times the floor: a queue


def test_the_floor_is_measured_afresh_when_asked_and_forgets_old_answers():
    limit, clock = adaptive(ceiling=16)
    round_trip(limit, clock, 0.1)
    assert limit.floor == pytest.approx(0.1)
    clock.now += 2 * FLOOR_MEMORY + 1
    round_trip(limit, clock, 0.3)
    round_trip(limit, clock, 0.3)
    assert limit.floor == pytest.approx(0.3)
    limit.forget_floor()
    assert limit.floor is None


def test_a_ceiling_of_one_stays_one():
    limit, clock = adaptive(ceiling=1)
    assert [round_trip(limit, clock) for _ in range(5)] == [1] * 5
    limit.overloaded(send(limit, 1)[0])
    assert limit.current == 1


def test_adaptive_off_pins_the_limit_at_the_ceiling():
    limit, clock = adaptive(ceiling=6, adaptive=False)
    assert limit.current == 6
    limit.overloaded(send(limit, 1)[0])
    round_trip(limit, clock, FLOOR)
    round_trip(limit, clock, 5 * FLOOR)
    assert limit.current == 6
    assert limit.floor == pytest.approx(FLOOR)  # still measured, for the closing lines


def test_the_settings_give_the_ceiling_and_the_switch():
    assert ConcurrencyLimit.of({}).ceiling == 16
    assert ConcurrencyLimit.of({}).adaptive is True
    pinned = ConcurrencyLimit.of({"max_concurrent_requests": 3, "adaptive_concurrency": False})
    assert (pinned.ceiling, pinned.current, pinned.adaptive) == (3, 3, False)


# --- the gate applies the limit --------------------------------------------------------


def _answered(status: int) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    return response


def _throttled() -> ThrottledError:
    return ThrottledError("429 Too Many Requests", _answered(429))


def test_the_gate_lets_no_more_requests_go_than_the_limit():
    gate = RequestGate(ConcurrencyLimit(2, adaptive=False))
    released = threading.Event()
    third_went = threading.Event()

    def hold() -> None:
        with gate.turn(overloaded=lambda exc: False):
            released.wait(HANG_GUARD)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()

    def third() -> None:
        with gate.turn(overloaded=lambda exc: False):
            third_went.set()

    waiting = threading.Thread(target=third)
    time.sleep(0.05)
    waiting.start()
    assert not third_went.wait(0.2)
    released.set()
    assert third_went.wait(HANG_GUARD)
    for thread in [*holders, waiting]:
        thread.join(HANG_GUARD)


def test_the_gate_backs_the_limit_off_on_an_overload_and_not_on_other_errors():
    limit = ConcurrencyLimit(16)
    gate = RequestGate(limit)
    with pytest.raises(ValueError, match="not an overload"), gate.turn(overloaded=lambda e: False):
        raise ValueError("not an overload")
    assert limit.current == START
    with (
        pytest.raises(ThrottledError),
        gate.turn(overloaded=lambda e: isinstance(e, ThrottledError)),
    ):
        raise _throttled()
    assert limit.current == START // 2


@pytest.mark.parametrize(
    ("error", "overloaded"),
    [
        (_throttled(), True),
        (RetriableAPIError("503", _answered(503)), True),
        (RetriableAPIError("504", _answered(504)), True),
        (requests.exceptions.ReadTimeout(), True),
        (requests.exceptions.ConnectionError(ConnectionResetError()), True),
        (requests.exceptions.ChunkedEncodingError(), True),
        (RetriableAPIError("500", _answered(500)), False),
        (RetriableAPIError("502", _answered(502)), False),
        (MalformedPageError("cut short"), False),
        (requests.exceptions.SSLError(), False),
        (ValueError("a 404, say"), False),
    ],
    ids=repr,
)
def test_what_says_the_server_is_overloaded(error, overloaded):
    assert says_overloaded(error) is overloaded


def test_cancel_wakes_a_request_waiting_for_a_slot():
    gate = RequestGate(ConcurrencyLimit(1, adaptive=False))
    gate.wait_turn()  # the only slot, never given back
    outcome: list[str] = []

    def wait() -> None:
        try:
            gate.wait_turn()
        except Cancelled:
            outcome.append("Cancelled")

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.05)
    gate.cancel()
    waiting.join(HANG_GUARD)
    assert outcome == ["Cancelled"]


# --- runs against servers of limited capacity --------------------------------------------

DONE = re.compile(
    r"\| customers: assignment (\d+) done: (\d+) records, .*; limit (\d+) of (\d+) requests at "
    r"once, latency floor (\d+ ms|unknown), (\d+) throttled \(429\)"
)


def assert_every_customer_once(run, sim, ids: list[int]) -> None:
    emitted = [(r["assignment_id"], r["crm__customer_id"]) for r in run.records()]
    expected = [(a, c["crm__customer_id"]) for a in ids for c in sim.customers(a)]
    assert emitted == expected


def test_a_small_server_is_read_whole_with_few_429s(simulator, tmp_path):
    ids = [1, 2, 3, 4]
    sim = simulator(
        [plain_assignment(i, 600) for i in ids],
        page_size=50,
        latency=0.05,
        capacity=CapacityModel(workers=2, queue=1, retry_after=1),
    )
    run = run_tap(config_for(sim, ids, max_retry_wait=5), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_every_customer_once(run, sim, ids)
    lines = DONE.findall(run.stderr)
    assert [int(line[0]) for line in lines] == ids
    assert all(int(line[3]) == 16 and 1 <= int(line[2]) <= 16 for line in lines)
    # Every 429 a partition got is in its closing line (discovery's are in none).
    throttled = re.findall(r" done: .*, (\d+) throttled \(429\)", run.stderr)
    assert sum(int(n) for n in throttled) <= sim.capacity.refused <= 10
    assert sim.capacity.refused == [r.status for r in sim.requests].count(429)


def test_a_roomy_server_never_sees_more_than_the_ceiling(simulator, tmp_path):
    ids = [1, 2]
    sim = simulator([plain_assignment(i, 1500) for i in ids], page_size=50, latency=0.05)
    run = run_tap(config_for(sim, ids, max_concurrent_requests=6), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_every_customer_once(run, sim, ids)
    assert 4 < sim.capacity.busiest <= 6
    assert [line[2:4] for line in DONE.findall(run.stderr)] == [("6", "6"), ("6", "6")]


def test_adaptive_off_keeps_the_ceiling_through_429_bursts(simulator, tmp_path):
    ids = [1]
    sim = simulator(
        [plain_assignment(1, 2000)],
        page_size=50,
        latency=0.05,
        capacity=CapacityModel(bursts=(0.3, 0.1), retry_after=1),
    )
    config = config_for(
        sim, ids, max_concurrent_requests=3, adaptive_concurrency=False, max_retry_wait=0.05
    )
    run = run_tap(config, tmp_path)
    assert run.returncode == 0, run.stderr
    assert_every_customer_once(run, sim, ids)
    assert [line[2:4] for line in DONE.findall(run.stderr)] == [("3", "3")]
    assert sim.capacity.refused > 0


def test_the_closing_line_counts_the_partitions_429s(simulator, tmp_path):
    ids = [1, 2]
    sim = simulator([plain_assignment(i, 600) for i in ids], page_size=50)
    sim.fail_next("/assignments/2/customers/?page=3", 429, headers={"Retry-After": "0"}, times=2)
    run = run_tap(config_for(sim, ids), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_every_customer_once(run, sim, ids)
    lines = {int(line[0]): line for line in DONE.findall(run.stderr)}
    assert (lines[1][5], lines[2][5]) == ("0", "2")
    assert all(re.fullmatch(r"\d+ ms", line[4]) for line in lines.values())


def test_one_request_at_once_stays_strictly_sequential(simulator, tmp_path):
    ids = [1, 2]
    sim = simulator([plain_assignment(i, 300) for i in ids], page_size=50, latency=0.01)
    run = run_tap(config_for(sim, ids, max_concurrent_requests=1), tmp_path)
    assert run.returncode == 0, run.stderr
    assert_every_customer_once(run, sim, ids)
    assert sim.capacity.busiest == 1
    assert [line[2:4] for line in DONE.findall(run.stderr)] == [("1", "1"), ("1", "1")]
