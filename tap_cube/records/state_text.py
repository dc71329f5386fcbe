"""Base64 text for the state, made from bytes that arrive in pieces.

A partition's ids and hashes are megabytes of state text at a million records; made a
piece at a time, no whole copy of their bytes is held beside the text.
"""

from __future__ import annotations

import binascii


class Base64Text:
    """`prefix` and the base64 of bytes that arrive in pieces, as if of them joined: each
    piece but the last is encoded in whole groups of 3 bytes, the rest carried over."""

    __slots__ = ("_carry", "_pieces")

    def __init__(self, prefix: str = "") -> None:
        self._pieces = [prefix]
        self._carry = b""

    def add(self, data: bytes) -> None:
        data = self._carry + data
        whole = len(data) - len(data) % 3
        self._pieces.append(binascii.b2a_base64(data[:whole], newline=False).decode("ascii"))
        self._carry = data[whole:]

    def value(self) -> str:
        """The text; the pieces are let go."""
        pieces, self._pieces = self._pieces, []
        pieces.append(binascii.b2a_base64(self._carry, newline=False).decode("ascii"))
        return "".join(pieces)
