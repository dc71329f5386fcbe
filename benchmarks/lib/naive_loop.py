"""The naive way to read Cube customers: follow `next` and print one JSON line per record.

This is the loop of the Cube integration notes' code sample, one `requests.get` per page
and no connection reuse, concurrency, retries or schema. benchmarks/tap_vs_others.py uses
it as a baseline::

    python benchmarks/lib/naive_loop.py --api-url http://127.0.0.1:8000/api/v1 \
        --token sim-token 1 2 3 4

It follows `next` links as given, so it needs a server whose links point back at itself
(the simulator's `--next-style same`): the real service's links may name another host.
"""

from __future__ import annotations

import argparse
import json
import sys

import requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--api-url", required=True, help="e.g. http://127.0.0.1:8000/api/v1")
    parser.add_argument("--token", required=True)
    parser.add_argument("assignment_ids", nargs="+", type=int)
    args = parser.parse_args(argv)

    headers = {"Authorization": f"Token {args.token}", "Accept": "application/json"}
    base = str(args.api_url).rstrip("/")
    for assignment_id in args.assignment_ids:
        url: str | None = f"{base}/assignments/{assignment_id}/customers/"
        while url:
            r = requests.get(url, headers=headers, timeout=60)
            r.raise_for_status()
            data = r.json()
            for rec in data["results"]:
                print(json.dumps(rec))
            url = data["next"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
