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
    return _Decoder(text, field_depth).run()


class _Decoder:
    """One pass over the tokens of `text`: a stack of open containers, and what may come
    next ("value", "key", "colon" or "after" a value)."""

    def __init__(self, text: str, field_depth: int) -> None:
        self.text = text
        self.field_depth = field_depth
        self.stack: list[_Container] = []
        self.position = 0
        self.expected = "value"
        #: The text's one value, once it is complete.
        self.done = False
        self.value: t.Any = None

    def run(self) -> t.Any:
        while not self.done:
            match = _TOKEN.match(self.text, self.position)
            if match is None:
                raise LenientDecodeError(f"not JSON at character {self.position}")
            self.position = match.end()
            kind = t.cast("str", match.lastgroup)
            self._token(kind, match[kind], match.start(kind))
        return self.value

    def _token(self, kind: str, lexeme: str, start: int) -> None:
        if kind == "string" and self.expected == "key":
            self._key(_scalar(kind, lexeme))
        elif kind != "punct":
            self._expect("value", lexeme[:20])
            self._place(_scalar(kind, lexeme))
        elif lexeme in "[{":
            self._expect("value", lexeme)
            items: dict[t.Any, t.Any] | list[t.Any] = {} if lexeme == "{" else []
            self.stack.append(_Container(items, start, len(self.stack)))
            self.expected = "key" if lexeme == "{" else "value"
        elif lexeme == ",":
            if self.expected != "after" or not self.stack:
                self._unexpected(lexeme)
            self.expected = "key" if isinstance(self.stack[-1].items, dict) else "value"
        elif lexeme == ":":
            self._expect("colon", lexeme)
            self.expected = "value"
        else:
            self._place(self._close(lexeme))

    def _key(self, key: t.Any) -> None:
        top = self.stack[-1]
        top.key = key
        if type(key) is JsonText and top.depth >= self.field_depth:
            top.odd = True
        self.expected = "colon"

    def _close(self, lexeme: str) -> t.Any:
        """The value of the container `lexeme` ends: its items, or its text as JsonText."""
        stack = self.stack
        top = stack.pop() if stack else None
        closes = "key" if lexeme == "}" else "value"
        if (
            top is None
            or (lexeme == "]") != isinstance(top.items, list)
            or (self.expected not in ("after", closes))
        ):
            self._unexpected(lexeme)
        assert top is not None  # _unexpected raised otherwise
        depth = self.field_depth
        if top.depth >= depth and (top.odd or top.depth - depth >= MAX_NESTING):
            if stack and stack[-1].depth >= depth:
                stack[-1].odd = True  # the field's value becomes text as a whole
                return None
            return JsonText(self.text[top.start : self.position].replace("\x00", "\\u0000"))
        return top.items

    def _place(self, value: t.Any) -> None:
        """Put a complete value in the open container, or end with it at the top."""
        self.expected = "after"
        if not self.stack:
            if self.text[self.position :].strip(" \t\n\r"):
                raise LenientDecodeError(f"extra data at character {self.position}")
            self.done, self.value = True, value
            return
        top = self.stack[-1]
        if type(value) is JsonText and top.depth >= self.field_depth:
            top.odd = True
        if isinstance(top.items, list):
            top.items.append(value)
        else:
            top.items[top.key] = value

    def _expect(self, what: str, shown: str) -> None:
        if self.expected != what:
            self._unexpected(shown)

    def _unexpected(self, shown: str) -> t.NoReturn:
        raise LenientDecodeError(f"unexpected {shown!r} at character {self.position}")


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
