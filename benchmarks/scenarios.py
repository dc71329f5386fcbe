"""The scenarios of benchmarks/run.py: how many customers, and how slow each page is.

(a) no latency, 4 assignments of 50,000 customers; (b) 200 ms per page, 4 assignments of
10,000 customers; and tap-cube alone on 4 assignments totalling 100,000 and 1,000,000
customers, to see whether its memory grows with the data. `--quick` takes a tenth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from common import ASSIGNMENT_IDS
from simulators import PAGE_SIZE

ASSIGNMENTS = len(ASSIGNMENT_IDS)
CONCURRENCY = 4  # tap-cube's default max_concurrent_requests


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    per_assignment: int
    latency: float = 0.0

    @property
    def assignment_ids(self) -> list[int]:
        return list(ASSIGNMENT_IDS)

    @property
    def total(self) -> int:
        return ASSIGNMENTS * self.per_assignment

    @property
    def pages(self) -> int:
        return ASSIGNMENTS * max(1, math.ceil(self.per_assignment / PAGE_SIZE))

    @property
    def ideal_seconds(self) -> float:
        """Every page's latency, spread over tap-cube's concurrent requests."""
        return self.pages * self.latency / CONCURRENCY

    def describe(self) -> str:
        latency = f"{self.latency * 1000:g} ms per page" if self.latency else "no latency"
        return (
            f"{latency}: {self.total:,} customers ({ASSIGNMENTS} assignments x "
            f"{self.per_assignment:,}; {self.pages:,} pages of {PAGE_SIZE})"
        )


def scenarios(*, quick: bool) -> tuple[Scenario, Scenario, Scenario, Scenario]:
    scale = 10 if quick else 1
    return (
        Scenario("a", "(a) throughput", 50_000 // scale),
        Scenario("b", "(b) latency", 10_000 // scale, latency=0.2),
        Scenario("m-small", "memory, small", 25_000 // scale),
        Scenario("m-large", "memory, large", 250_000 // scale),
    )
