"""Authentication as DRF answers it: a token or HTTP basic, with DRF's error bodies."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from cube_simulator.answers import Answer, error

_CHALLENGE = (("WWW-Authenticate", "Token"),)


@dataclass
class Credentials:
    """The one user the simulator knows: a token, or a username and password."""

    token: str
    username: str
    password: str

    def check(self, header: str | None) -> Answer | None:
        """The 401 answer for an Authorization header, or None when it is accepted."""
        keyword, _, credentials = (header or "").strip().partition(" ")
        credentials = credentials.strip()
        if keyword.lower() == "token":
            if not credentials:
                return error(401, "Invalid token header. No credentials provided.", _CHALLENGE)
            if " " in credentials:
                message = "Invalid token header. Token string should not contain spaces."
                return error(401, message, _CHALLENGE)
            if not hmac.compare_digest(credentials.encode(), self.token.encode()):
                return error(401, "Invalid token.", _CHALLENGE)
            return None
        if keyword.lower() == "basic":
            if not credentials:
                return error(401, "Invalid basic header. No credentials provided.", _CHALLENGE)
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                message = "Invalid basic header. Credentials not correctly base64 encoded."
                return error(401, message, _CHALLENGE)
            user, _, password = decoded.partition(":")
            expected = f"{self.username}:{self.password}".encode()
            if not hmac.compare_digest(f"{user}:{password}".encode(), expected):
                return error(401, "Invalid username/password.", _CHALLENGE)
            return None
        return error(401, "Authentication credentials were not provided.", _CHALLENGE)
