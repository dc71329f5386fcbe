#!/usr/bin/env python3
"""Regenerate tests/fixtures/notes/ from Cube's integration notes, whole history.

Usage: scripts/notes_fixtures.py PATH_TO_A_CLONE_OF_Headshed/cube-integration [OUT_DIR]

The path may be a work tree or a bare git directory. Every version of every file in the
history is read (`git log --all`); every JSON example in a fenced block whose section
shows a GET request or an example response becomes a fixture, unless it is a request
body (POST/PUT). The notes' typos are repaired by the rules in REPAIRS, each repair
noted in the fixture. Identical bodies (after repair) are kept once, with every place
they appear. Output is deterministic: running it again on the same history changes
nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "notes"

#: Path patterns of the endpoints the notes document, and the stream reading each (None:
#: tap-cube reads no such list). The first match wins.
ENDPOINTS: tuple[tuple[str, str, str | None], ...] = (
    (r"/assignments/\d+/customers/\d+", "/assignments/{id}/customers/{customer_id}", None),
    (r"/assignments/\d+/customers/?", "/assignments/{id}/customers/", "customers"),
    (r"/assignments/\d+/crm_custom_fields/?", "/assignments/{id}/crm_custom_fields/",
     "customer_custom_fields"),
    (r"/assignments/\d+/callflow_customers/?", "/assignments/{id}/callflow_customers/",
     "callflow_customers"),
    (r"/data_owners/\d+/crm/[A-Za-z0-9]+/customers/\d+",
     "/data_owners/{id}/crm/{crm_type}/customers/{customer_id}", None),
    (r"/data_owners/\d+/crm/[A-Za-z0-9]+/customers/?",
     "/data_owners/{id}/crm/{crm_type}/customers/", None),
    (r"/data_owners/\d+/[A-Za-z0-9]+/customers/\d+",
     "/data_owners/{id}/{crm_type}/customers/{customer_id}", None),
    (r"/data_owners/\d+/[A-Za-z0-9]+/customers/?", "/data_owners/{id}/{crm_type}/customers/",
     "crm_customers"),
    (r"/data_owners/\d+/[A-Za-z0-9]+/crm_custom_fields/?",
     "/data_owners/{id}/{crm_type}/crm_custom_fields/", "crm_custom_fields"),
    (r"/data_owners/\d+/crm/[A-Za-z0-9]+/callflow_customers/?",
     "/data_owners/{id}/crm/{crm_type}/callflow_customers/", "crm_callflow_customers"),
    (r"/data_owners/\d+/crm/[A-Za-z0-9]+/call_outcomes/?",
     "/data_owners/{id}/crm/{crm_type}/call_outcomes/", "crm_call_outcomes"),
    (r"/data_owners/\d+/crm/[A-Za-z0-9]+/product_registrations/?",
     "/data_owners/{id}/crm/{crm_type}/product_registrations/", "crm_product_registrations"),
    (r"/campaigns/\d+/call_outcomes/?", "/campaigns/{id}/call_outcomes/", "call_outcomes"),
    (r"/campaigns/\d+/product_registrations/?", "/campaigns/{id}/product_registrations/",
     "product_registrations"),
    (r"/campaigns/\d+/callflow_customers/?", "/campaigns/{id}/callflow_customers/", None),
    (r"/campaigns/\d+/responses/?", "/campaigns/{id}/responses/", None),
    (r"/call_outcomes/?", "/call_outcomes/", None),
    # External users ask /client_access/campaigns for the same rows.
    (r"(?:/client_access)?/campaigns/?", "/campaigns", "campaigns"),
    (r"/assignments/?", "/assignments", None),
)  # fmt: skip


#: The repairs, in the order they are tried; each fixture lists those it needed.
REPAIRS = {
    "elision": "dropped elision lines (`........`, `...more properties...`) standing for more",
    "unterminated": "closed a string left open (a `next` link without its closing quote)",
    "mixed_quotes": "a string opened with ' and closed with \" got a double quote at both ends",
    "missing_comma": "added the comma missing between two members",
    "trailing_comma": "dropped a comma before a closing bracket",
    "braced_list": "a list written as `{ {...}, {...} }`: its outer braces became brackets",
    "stray_closer": "dropped a closing bracket that closes nothing",
    "unclosed": "closed the brackets the example leaves open (it ends after the first row)",
    "fence_inside": "dropped prose that was pasted inside the code block",
}

_FENCE = re.compile(r"```\s*[A-Za-z]*\s*")
_URL = re.compile(r"https?://[^\s`'\")]+")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(  # noqa: S603 - git with arguments of our own
        ["git", "--git-dir", str(git_dir(repo)), *args],  # noqa: S607 - git from PATH
        capture_output=True,
        text=True,
        check=True,
        encoding="utf-8",
    ).stdout


def git_dir(repo: Path) -> Path:
    return repo / ".git" if (repo / ".git").exists() else repo


def versions(repo: Path) -> list[tuple[str, str, str]]:
    """(commit, date, file) of every file version any commit adds or changes, oldest first."""
    log = git(repo, "log", "--all", "--reverse", "--date=short", "--format=@%H %ad",
              "--name-status", "--no-renames")  # fmt: skip
    found: list[tuple[str, str, str]] = []
    commit = day = ""
    for line in log.splitlines():
        if line.startswith("@"):
            commit, day = line[1:].split()
        elif line.strip():
            status, *paths = line.split("\t")
            if status != "D":
                found.append((commit, day, paths[-1]))
    return found


def blocks(text: str) -> t.Iterator[tuple[int, list[str]]]:
    """(line number of the opening fence, lines) of each fenced block; inline ```…``` is
    no fence."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        if _FENCE.fullmatch(lines[i].strip()):
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            yield i + 1, lines[i + 1 : j]
            i = j + 1
        else:
            i += 1


def _api_urls(line: str) -> list[str]:
    """The URLs in a line, but for links to other pages of the notes."""
    return [url for url in _URL.findall(line) if "github.com" not in url]


def section_before(lines: list[str], at: int) -> list[str]:
    """The lines before a block, from the heading above the nearest API URL before it."""
    url_at = at - 1
    while url_at > 0 and not _api_urls(lines[url_at - 1]):
        url_at -= 1
    start = url_at
    while start > 0 and not lines[start - 1].startswith("#"):
        start -= 1
    return lines[max(start - 1, 0) : at - 1]


def is_request_body(context: list[str]) -> bool:
    near = " ".join(context[-6:])
    return bool(re.search(r"\b(POST|PUT|PATCH)\b", near)) and "Example response" not in near


def repair(text: str) -> tuple[t.Any, list[str]]:
    """The example parsed, and which REPAIRS it needed; ValueError when none helps."""
    done: list[str] = []
    lines = text.split("\n")
    kept = [line for line in lines if not re.match(r"\s*\.{3,}", line)]
    if len(kept) != len(lines):
        done.append("elision")
    lines = kept
    kept = [line for line in lines if not re.match(r"\s*[A-Za-z](?!rue|alse|ull)", line)]
    if len(kept) != len(lines):
        done.append("fence_inside")
    lines = kept
    kept = []
    for line in lines:
        line, mixed = re.subn(r":(\s*)'([^'\"]*)\"", r':\1"\2"', line)
        if mixed:
            done.append("mixed_quotes")
        if line.count('"') % 2 == 1 and re.search(r':\s*"[^"]*,?\s*$', line):
            line = re.sub(r",?\s*$", '",', line, count=1)
            done.append("unterminated")
        kept.append(line)
    lines = kept
    # A member ends a line and the next line starts another without a comma between.
    for i in range(len(lines) - 1):
        value_ends = re.search(r'("|\d|true|false|null|\}|\])\s*$', lines[i])
        member_starts = re.match(r'\s*"', lines[i + 1]) or (
            re.match(r"\s*\{", lines[i + 1]) and lines[i].rstrip().endswith("}")
        )
        if value_ends and member_starts:
            lines[i] = lines[i].rstrip() + ","
            done.append("missing_comma")
    text = "\n".join(lines)
    stripped = text.strip()
    if re.match(r"\{\s*\{", stripped):
        stripped = "[" + stripped[1:].rstrip()
        stripped = stripped[:-1] + "]" if stripped.endswith("}") else stripped
        done.append("braced_list")
    fixed, trailing = re.subn(r",(\s*[}\]]|\s*$)", r"\1", stripped)
    if trailing:
        done.append("trailing_comma")
    fixed, changes = balance(fixed)
    done.extend(changes)
    fixed, trailing = re.subn(r",(\s*[}\]])", r"\1", fixed)
    if trailing and "trailing_comma" not in done:
        done.append("trailing_comma")
    return json.loads(fixed), sorted(set(done), key=list(REPAIRS).index)


def balance(text: str) -> tuple[str, list[str]]:
    """Drop closers that close nothing, and close what is left open at the end."""
    out: list[str] = []
    stack: list[str] = []
    changes: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped = ch == "\\" and not escaped
            in_string = not (ch == '"' and not escaped)
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}":
            if not stack or stack[-1] != ch:
                changes.append("stray_closer")
                continue
            stack.pop()
        out.append(ch)
    if stack:
        changes.append("unclosed")
        out.append("".join(reversed(stack)))
    return "".join(out), changes


def endpoint_of(url: str) -> tuple[str, str | None, str] | None:
    """(endpoint pattern, stream, request path and query) of a documented URL."""
    parts = urlsplit(url.rstrip(".,"))
    path = parts.path.removeprefix("/api/v1")
    for pattern, endpoint, stream in ENDPOINTS:
        if re.fullmatch(pattern, path):
            # External users' /client_access/campaigns lists what /campaigns does.
            path = path.removeprefix("/client_access")
            request = path + (f"?{parts.query}" if parts.query else "")
            return endpoint, stream, request
    return None


def documented_request(context: list[str], body: object) -> tuple[str, str | None, str] | None:
    """What the example answers: its "Request example", else the endpoint its `next` link
    names, else the last GET of its section."""
    for line in reversed(context):
        if "Request example" in line:
            for url in _URL.findall(line):
                if (found := endpoint_of(url)) is not None:
                    return found
    if isinstance(body, dict) and isinstance(body.get("next"), str):
        found = endpoint_of(body["next"])
        if found is not None:
            endpoint, stream, request = found
            return endpoint, stream, urlsplit(request).path
    for line in reversed(context):
        for url in reversed(_URL.findall(line.replace("{", "1").replace("}", ""))):
            if (found := endpoint_of(url)) is not None:
                return found
    return None


def extract(repo: Path) -> list[dict[str, t.Any]]:
    fixtures: dict[str, dict[str, t.Any]] = {}
    for commit, day, name in versions(repo):
        if not name.endswith(".md") and "." in name:
            continue  # LICENSE and the like hold no examples
        text = git(repo, "show", f"{commit}:{name}")
        lines = text.split("\n")
        for number, block in blocks(text):
            raw = "\n".join(block).strip()
            if not raw.startswith(("{", "[")):
                continue
            context = section_before(lines, number)
            if is_request_body(context):
                continue
            try:
                body, repairs = repair(raw)
            except ValueError as exc:
                msg = f"{name} at {commit[:7]} line {number}: cannot repair: {exc}"
                raise SystemExit(msg) from exc
            documented = documented_request(context, body)
            endpoint, stream, request = documented or (None, None, None)
            canonical = json.dumps(body, sort_keys=True, ensure_ascii=False)
            digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
            place = {"file": name, "commit": commit, "date": day, "line": number + 1}
            if digest in fixtures:
                fixtures[digest]["also_in"].append(place)
                continue
            fixtures[digest] = {
                "id": f"{Path(name).stem}-{day}-{commit[:7]}-{number + 1}",
                "source": place,
                "endpoint": endpoint,
                "request": request,
                "stream": stream,
                "draft": "V3" in name,
                "repairs": [REPAIRS[r] for r in repairs],
                "also_in": [],
                "body": body,
            }
    return sorted(fixtures.values(), key=lambda f: f["id"])


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    repo = Path(argv[1])
    out = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUT
    fixtures = extract(repo)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for fixture in fixtures:
        path = out / f"{fixture['id']}.json"
        path.write_text(json.dumps(fixture, indent=2, ensure_ascii=False) + "\n", "utf-8")
    files = {f["source"]["file"] for f in fixtures} | {
        p["file"] for f in fixtures for p in f["also_in"]
    }
    print(f"{len(fixtures)} fixtures from {len(files)} files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
