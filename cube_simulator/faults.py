"""Injected faults: scripted answers for chosen URLs, random failures, and list latency."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cube_simulator.answers import HTML, JSON, Answer, error

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

FAULT_KINDS = ("429", "500", "502", "503", "504", "reset", "truncated")
_PROXY_PAGES = {
    502: b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    503: b"<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>",
    504: b"<html><body><h1>504 Gateway Time-out</h1></body></html>",
}


@dataclass
class _Script:
    substring: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    remaining: int
    trickle: float = 0.0


class FaultPlan:
    """What goes wrong, and how slow lists are.

    A random `failure_rate` share of otherwise successful answers becomes one of
    `failure_kinds`, never more than `max_consecutive_failures` times in a row for one
    URL; the random generator is seeded, so a run's faults repeat. Scripted answers
    (fail_next) come first and do not count against max_consecutive_failures.
    """

    def __init__(
        self,
        lock: threading.Lock,
        *,
        latency: float,
        failure_rate: float,
        failure_kinds: tuple[str, ...],
        max_consecutive_failures: int,
        retry_after: str,
        seed: int,
        slowdown: Callable[[], float] = lambda: 1.0,
    ) -> None:
        """`slowdown`: what list latency is multiplied by at the moment (capacity.py)."""
        self._lock = lock
        self._slowdown = slowdown
        self.latency = latency
        self.failure_rate = failure_rate
        self.failure_kinds = failure_kinds
        self.max_consecutive_failures = max_consecutive_failures
        self.retry_after = retry_after
        self._rng = random.Random(seed)  # noqa: S311 - reproducible faults, not secrets
        self._consecutive: dict[str, int] = {}
        self._scripts: list[_Script] = []

    def fail_next(
        self,
        path_substring: str,
        status: int,
        body: str | bytes,
        headers: dict[str, str] | None,
        times: int,
        trickle: float,
    ) -> None:
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

    def forget_scripted(self) -> None:
        with self._lock:
            self._scripts.clear()

    def scripted(self, target: str) -> Answer | None:
        """The scripted answer for `target` (path and query as requested), if any is due."""
        with self._lock:
            for script in self._scripts:
                if script.remaining > 0 and script.substring in target:
                    script.remaining -= 1
                    if script.remaining == 0:
                        self._scripts.remove(script)
                    html = script.body.lstrip().startswith(b"<")
                    # A Content-Type among the headers replaces the one the body suggests.
                    given = {name.lower(): value for name, value in script.headers}
                    others = tuple(h for h in script.headers if h[0].lower() != "content-type")
                    return Answer(
                        script.status,
                        script.body,
                        given.get("content-type", HTML if html else JSON),
                        others,
                        trickle=script.trickle,
                    )
        return None

    def after_success(self, answer: Answer, target: str) -> Answer:
        """A successful answer delayed (a list page) or replaced by a random fault."""
        if answer.paginated and self.latency > 0:
            time.sleep(self.latency * self._slowdown())
        kind = self._pick(target)
        return answer if kind is None else self._fault(kind, answer)

    def _pick(self, target: str) -> str | None:
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

    def _fault(self, kind: str, answer: Answer) -> Answer:
        if kind == "429":
            message = "Request was throttled. Expected available in 1 second."
            return error(429, message, (("Retry-After", self.retry_after),))
        if kind == "500":
            return error(500, "A server error occurred.")
        if kind in ("502", "503", "504"):
            return Answer(int(kind), _PROXY_PAGES[int(kind)], HTML)
        if kind == "reset":
            return Answer(0)
        body = answer.render()  # "truncated": a complete response whose JSON is cut short
        return Answer(200, body[: max(1, len(body) // 2)])
