"""A request as the views see it, and the answer they give back (the server writes it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from cube_simulator.fake_values import encode

if TYPE_CHECKING:
    from collections.abc import Callable

JSON = "application/json"
HTML = "text/html"
_DJANGO_404 = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n'
    b"<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>"
    b"\n</body>\n</html>\n"
)


@dataclass
class Request:
    method: str
    path: str
    query: str
    host: str
    authorization: str | None

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        # Django's QueryDict.get returns the last value of a repeated parameter.
        values = self.params.get(name)
        return values[-1] if values else None


@dataclass
class Answer:
    status: int  # 0: reset the connection
    body: bytes | Callable[[], bytes] = b""  # a callable renders the body when it is sent
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    paginated: bool = False
    trickle: float = 0.0  # seconds between the bytes of the body

    def render(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else self.body()


def error(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """An error as DRF words it: {"detail": message}."""
    return Answer(status, encode({"detail": message}), headers=headers)


NOT_FOUND = error(404, "Not found.")
FORBIDDEN = error(403, "You do not have permission to perform this action.")
NO_ROUTE = Answer(404, _DJANGO_404, "text/html; charset=utf-8")  # Django's own 404 page
