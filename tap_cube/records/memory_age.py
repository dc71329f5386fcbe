"""The age of a partition's memory: when it was last sent whole.

A partition's stored hashes (skip_unchanged) vouch for what the target holds only as
long as the target still holds what was sent. The tap cannot see a target truncated,
restored, or loaded by a run whose STATE was lost; so the memory has a birth time (the
start of the last read that sent every record of the partition), and memory older
than `resend_before` or than its partition's age limit is not trusted: the partition
is sent whole, its delivered ids kept. Whatever went wrong heals within that age.
"""

from __future__ import annotations

import typing as t
from datetime import timedelta

import msgspec
import xxhash

if t.TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

#: The key of a partition's state that holds when its memory was born.
STATE_KEY = "memory_born_at"
#: The share of max_memory_age_days by which a partition's own limit may be shorter,
#: so that partitions born on the same day (the first run) refresh on different days.
SPREAD = 0.5


def age_limit(max_age_days: float, stream: str, context: Mapping[str, t.Any]) -> timedelta:
    """How old a partition's memory may grow: between (1 - SPREAD) times max_age_days and
    max_age_days, the same for the partition in every run (from a hash of its name)."""
    name = msgspec.json.encode([stream, dict(sorted(context.items()))])
    share = xxhash.xxh3_64_intdigest(name) / 2**64
    return timedelta(days=float(max_age_days) * (1 - SPREAD * share))


def distrust_reason(
    born: datetime | None,
    *,
    now: datetime,
    limit: timedelta,
    resend_before: datetime | None,
) -> str | None:
    """Why memory born at `born` (None: unknown) is not trusted now; None: it is."""
    if born is None:
        return "its memory has no birth time (kept by an earlier tap-cube)"
    if born > now:
        return f"its memory's birth time {born.isoformat()} is in the future"
    if resend_before is not None and born < resend_before:
        when = resend_before.isoformat()
        return f"its memory is from {born.isoformat()}, before resend_before ({when})"
    age = now - born
    if age > limit:
        return (
            f"its memory is {age / timedelta(days=1):.1f} days old, older than the "
            f"{limit / timedelta(days=1):.1f} days this partition's memory may grow "
            "(max_memory_age_days, spread over partitions)"
        )
    return None
