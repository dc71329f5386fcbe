"""`tap-cube --probe`: what a server sends, described without showing a single value.

Users hold the real servers; the notes are all the project can read. A probe reads the
first page of a few partitions of every stream the configuration offers and prints, per
endpoint, its era, the style of its `next` link, and each field's JSON types and format
classes (tap_cube/records/formats.py) with what the tap does with it. `--probe=DIR` also writes a
redacted fixture per endpoint: the page with every value replaced by a same-format
stand-in, which the simulator can serve back, so a bug report becomes a test.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import typing as t
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlparse, urlsplit

from tap_cube.errors import ConfigError, CubeError, scrubber
from tap_cube.records.coercion import CATCH_ALL, RecordCoercion
from tap_cube.records.formats import StandIns, format_class, json_type
from tap_cube.streams.call_outcomes import DayWindowStream

if t.TYPE_CHECKING:
    from pathlib import Path

    from singer_sdk.helpers.types import Context
    from singer_sdk.streams import Stream

    from tap_cube.streams.cube_stream import CubeStream

#: Partitions whose first page one endpoint's probe reads, at most, and how many of
#: them need rows before it stops.
PARTITIONS_TRIED = 10
PARTITIONS_WITH_ROWS = 3

STOPS_THE_RUN = "stops the run"


@dataclass
class Endpoint:
    """What the probe saw of one stream's endpoint."""

    stream: CubeStream
    pages: int = 0
    rows: list[dict[str, t.Any]] = field(default_factory=list)
    link_styles: Counter[str] = field(default_factory=Counter)
    #: Per field, what the tap does with its values: "column", "kept in _cube_unparsed", ...
    reads: dict[str, Counter[str]] = field(default_factory=dict)
    rows_stopping: int = 0
    problems: list[str] = field(default_factory=list)
    #: The first page with rows, as the server sent it, and its path and query below
    #: api_url.
    sample: dict[str, t.Any] | None = None
    sample_request: str = ""

    @property
    def era(self) -> str:
        path = self.stream.path or ""
        if path.startswith("/assignments/"):
            return "assignment"
        if path.startswith("/data_owners/"):
            return "data owner"
        names = {name for row in self.rows for name in row}
        eras = [
            era
            for era, marks in (
                ("assignment", {"assignment__id", "assignment__name"}),
                ("data owner", {"data_owner__id", "data_owner__name"}),
            )
            if names & marks
        ]
        return " and ".join(eras) or "unknown"


def probe(streams: t.Iterable[Stream], api_url: str, fixture_dir: Path | None) -> str:
    """The report of every stream's endpoint; fixtures written to `fixture_dir` if given."""
    lines = [
        "tap-cube probe: what the server sends, by JSON type and format class; no value is "
        "shown. 'read as' says where the tap puts each field.",
    ]
    if fixture_dir is not None:
        make_fixture_dir(fixture_dir)  # before the probe's reads: a bad DIR wastes none
    for stream in streams:
        endpoint = read_endpoint(t.cast("CubeStream", stream), api_url)
        lines += ["", *report(endpoint)]
        if fixture_dir is not None and endpoint.sample is not None:
            written = write_fixture(endpoint, fixture_dir)
            lines.append(f"  redacted fixture: {written}")
    return "\n".join(lines)


def read_endpoint(stream: CubeStream, api_url: str) -> Endpoint:
    """The first page of a few partitions of `stream`, and what the tap makes of them."""
    endpoint = Endpoint(stream)
    with_rows = 0
    for context in probe_contexts(stream):
        try:
            page = stream.requests.fetch_page(context, None)
        except CubeError as exc:
            endpoint.problems.append(scrubber.scrub(str(exc)))
            continue
        body = page.body
        endpoint.pages += 1
        endpoint.link_styles[link_style(stream, context, body, api_url)] += 1
        for record in page.records:
            record_reads(stream, record, endpoint)
        endpoint.rows += page.records
        if page.records:
            with_rows += 1
            if endpoint.sample is None:
                endpoint.sample = body
                api_path = urlsplit(api_url).path.rstrip("/")
                endpoint.sample_request = stream.requests.pages.shown_path(
                    context, None
                ).removeprefix(api_path)
            if with_rows >= PARTITIONS_WITH_ROWS:
                break
    return endpoint


def probe_contexts(stream: CubeStream) -> t.Iterator[Context]:
    """The contexts of the first pages to read: the latest day window, for windowed lists."""
    for partition in (stream.partitions or [{}])[:PARTITIONS_TRIED]:
        if isinstance(stream, DayWindowStream):
            window = stream.latest_window(partition, datetime.now(UTC))
            if window is not None:
                yield window
        else:
            yield partition


def link_style(stream: CubeStream, context: Context, body: dict[str, t.Any], api_url: str) -> str:
    """How the page's `next` link is written, and whether the tap can follow it."""
    if not stream.spec.paginated:
        return "none (a plain list)"
    link = body.get("next")
    if not isinstance(link, str) or not link:
        return "null"
    parsed, base = urlsplit(link), urlsplit(api_url)
    if not parsed.scheme and not parsed.netloc:
        where = "relative"
    elif (parsed.scheme, parsed.netloc) == (base.scheme, base.netloc):
        where = "absolute, same host"
    else:
        where = "absolute, other host/scheme"
    kind = stream.requests.pages.paginator(context).link_kind(urlparse(link))
    return where if kind is None else f"{where}; {kind}"


def record_reads(stream: CubeStream, record: dict[str, t.Any], endpoint: Endpoint) -> None:
    """Count, per field of `record`, where the tap puts its value."""
    properties = stream.schema.get("properties", {})
    try:
        fitted = stream.record_fit.coerce(copy.deepcopy(record))
    except CubeError:
        endpoint.rows_stopping += 1
        single = RecordCoercion(properties)
        for name, value in record.items():
            try:
                where = read_as(single({name: copy.deepcopy(value)}), name, properties)
            except CubeError:
                where = STOPS_THE_RUN
            endpoint.reads.setdefault(name, Counter())[where] += 1
        return
    for name in record:
        endpoint.reads.setdefault(name, Counter())[read_as(fitted, name, properties)] += 1


def read_as(fitted: dict[str, t.Any], name: str, properties: dict[str, t.Any]) -> str:
    """Where field `name` ended up in the fitted record."""
    if name in (fitted.get(CATCH_ALL) or {}):
        return f"kept in {CATCH_ALL}" + (" (not its column's type)" if name in properties else "")
    if name in fitted:
        return "column"
    for column in properties:
        if name.startswith(f"{column}__") and isinstance(fitted.get(column), dict):
            return f"in {column}"
    return "not kept"


def report(endpoint: Endpoint) -> list[str]:
    stream = endpoint.stream
    lines = [
        f"{stream.name}: GET {stream.path}",
        f"  era: {endpoint.era}",
        f"  read: the first page of {endpoint.pages} partition(s), {len(endpoint.rows)} rows",
    ]
    lines += [f"  problem: {problem}" for problem in endpoint.problems]
    for style, pages in sorted(endpoint.link_styles.items()):
        lines.append(f"  next link: {style} ({pages} page{'s' * (pages != 1)})")
    if endpoint.rows_stopping:
        lines.append(f"  rows that stop the run: {endpoint.rows_stopping}")
    if not endpoint.rows:
        lines.append("  no rows to describe")
        return lines
    names = list(dict.fromkeys(name for row in endpoint.rows for name in row))
    width = max(len(name) for name in names) + 2
    lines.append(f"  {'field':<{width}}JSON type / format class (rows) -> read as")
    for name in names:
        values = [row[name] for row in endpoint.rows if name in row]
        kinds = Counter(f"{json_type(value)} / {format_class(value)}" for value in values)
        shapes = ", ".join(f"{kind} ({n})" for kind, n in sorted(kinds.items()))
        reads = endpoint.reads.get(name, Counter())
        read = ", ".join(
            f"{where} ({n})" if len(reads) > 1 else where for where, n in sorted(reads.items())
        )
        absent = len(endpoint.rows) - len(values)
        missing = f", absent ({absent})" if absent else ""
        lines.append(f"  {name:<{width}}{shapes}{missing} -> {read}")
    return lines


def write_fixture(endpoint: Endpoint, directory: Path) -> Path:
    """The redacted first page with rows as `<stream>.json`, in the conformance suite's
    fixture format (tests/fixtures/): copied into tests/fixtures/reports/, it is run there
    as the notes' examples are."""
    assert endpoint.sample is not None
    stream = endpoint.stream
    rows = StandIns().redact(endpoint.sample["results"], stream.spec.vocabulary)
    body: object = (
        {"count": len(endpoint.sample["results"]), "next": None, "previous": None, "results": rows}
        if stream.spec.paginated
        else rows
    )
    fixture = {
        "id": f"probe-{stream.name}",
        "source": {
            "file": "tap-cube --probe",
            "date": datetime.now(UTC).date().isoformat(),
            "era": endpoint.era,
            "next_link": sorted(endpoint.link_styles),
        },
        "endpoint": stream.path,
        "request": endpoint.sample_request,
        "stream": stream.name,
        "draft": False,
        "repairs": [],
        "also_in": [],
        "body": body,
    }
    path = directory / f"{stream.name}.json"
    try:
        path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    return path


def make_fixture_dir(directory: Path) -> None:
    """Create the fixture directory, or raise ConfigError saying why it cannot be."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise _unwritable(directory, PermissionError(errno.EACCES, "Permission denied"))


def _unwritable(directory: Path, exc: OSError) -> ConfigError:
    reason = exc.strerror or type(exc).__name__
    return ConfigError(
        f"--probe={directory}: the fixture directory cannot be made or written ({reason}); "
        "give a directory you can write, e.g. --probe=cube-fixtures"
    )
