"""Values no column can hold as they are, kept as their JSON text instead.

JSON parsers disagree on some bodies: a lone surrogate (`"\\ud800"`), `NaN`,
`Infinity`, a number beyond a float (`1e309`), nesting a thousand levels deep. msgspec
refuses them all; PostgreSQL refuses NUL in text and `\\u0000` in jsonb. Such a body is
not broken and reading it again gives the same, so it is decoded here leniently, once:
each value that cannot be stored as it is becomes a `JsonText`, the server's JSON text
of that value, which coercion keeps in the catch-all column (tap_cube/records/coercion.py).
"""

from __future__ import annotations

import json
import re
import typing as t

#: Levels of nesting within a field's value kept as a value; deeper is kept as text.
MAX_NESTING = 100

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)
    | (?P<word>true|false|null|NaN|-?Infinity)
    | (?P<punct>[\[\]{},:])
    )""",
    re.VERBOSE | re.DOTALL,
)
_SURROGATE = re.compile("[\ud800-\udfff]")
_WORDS: dict[str, object] = {"true": True, "false": False, "null": None}


class JsonText(str):
    """A value kept as the server's JSON text of it: `json.loads(text)` in Python gives it.

    A str, so that whatever handles ids or messages takes it; but not of type `str`, so
    that every converter finds it fits no column.
    """

    __slots__ = ()


class LenientDecodeError(ValueError):
    """The text is not JSON even to a lenient parser: cut short, or not JSON at all."""


def storable(value: str) -> bool:
    """Whether a string can be stored as it is: no NUL, no lone surrogate."""
    return "\x00" not in value and _SURROGATE.search(value) is None


class _Container:
    __slots__ = ("depth", "items", "key", "odd", "start")

    def __init__(self, items: dict[t.Any, t.Any] | list[t.Any], start: int, depth: int) -> None:
        self.items = items
        self.start = start
        self.depth = depth
        self.key: str | None = None
        self.odd = False


def decode(text: str, field_depth: int) -> t.Any:
    """Decode JSON `text`, values that cannot be stored as they are becoming `JsonText`.

    Containers at depth `field_depth` and deeper are the values of fields (or inside
    them): one that holds such a value, or nests deeper than MAX_NESTING, becomes
    JsonText as a whole. Iterative, so no nesting exhausts the stack.
    """
    stack: list[_Container] = []
    position = 0
    expected = "value"  # what may come next: "value", "key", "colon" or "after" a value
    while True:
        match = _TOKEN.match(text, position)
        if match is None:
            raise LenientDecodeError(f"not JSON at character {position}")
        position = match.end()
        kind = t.cast("str", match.lastgroup)
        lexeme = match[kind]
        value: t.Any
        if kind == "string" and expected == "key":
            key = stack[-1].key = _scalar(kind, lexeme)
            if type(key) is JsonText and stack[-1].depth >= field_depth:
                stack[-1].odd = True
            expected = "colon"
            continue
        if kind != "punct":
            if expected != "value":
                raise LenientDecodeError(f"unexpected {lexeme[:20]!r} at character {position}")
            value = _scalar(kind, lexeme)
        elif lexeme in "[{":
            if expected != "value":
                raise LenientDecodeError(f"unexpected {lexeme!r} at character {position}")
            items: dict[t.Any, t.Any] | list[t.Any] = {} if lexeme == "{" else []
            stack.append(_Container(items, match.start(kind), len(stack)))
            expected = "key" if lexeme == "{" else "value"
            continue
        elif lexeme == ",":
            if expected != "after" or not stack:
                raise LenientDecodeError(f"unexpected ',' at character {position}")
            expected = "key" if isinstance(stack[-1].items, dict) else "value"
            continue
        elif lexeme == ":":
            if expected != "colon":
                raise LenientDecodeError(f"unexpected ':' at character {position}")
            expected = "value"
            continue
        else:  # a container ends
            top = stack.pop() if stack else None
            closes = "key" if lexeme == "}" else "value"
            if (
                top is None
                or (lexeme == "]") != isinstance(top.items, list)
                or (expected not in ("after", closes))
            ):
                raise LenientDecodeError(f"unexpected {lexeme!r} at character {position}")
            value = top.items
            if top.depth >= field_depth and (top.odd or top.depth - field_depth >= MAX_NESTING):
                if stack and stack[-1].depth >= field_depth:
                    stack[-1].odd = True  # the field's value becomes text as a whole
                    value = None
                else:
                    value = JsonText(text[top.start : position].replace("\x00", "\\u0000"))
        expected = "after"
        if not stack:
            if text[position:].strip(" \t\n\r"):
                raise LenientDecodeError(f"extra data at character {position}")
            return value
        top = stack[-1]
        if type(value) is JsonText and top.depth >= field_depth:
            top.odd = True
        if isinstance(top.items, list):
            top.items.append(value)
        else:
            top.items[top.key] = value


def _scalar(kind: str, lexeme: str) -> t.Any:
    if kind == "string":
        value = lexeme[1:-1] if "\\" not in lexeme else json.loads(lexeme, strict=False)
        return value if storable(value) else JsonText(json.dumps(value))
    if kind == "word":
        return _WORDS[lexeme] if lexeme in _WORDS else JsonText(lexeme)
    if "." not in lexeme and "e" not in lexeme and "E" not in lexeme:
        try:
            return int(lexeme)
        except ValueError:  # more digits than Python converts
            return JsonText(lexeme)
    number = float(lexeme)
    return number if number - number == 0 else JsonText(lexeme)
